"""The cell rules: how one cell of an export, or one field of an API request, becomes a value.

One implementation, vectorised (pyarrow compute and numpy), used by ingest for every row of every file and by
the real-time API for every field, so a cell means the same thing wherever it arrives. Each rule looks at one
cell only: what other cells hold never changes how a cell is read.

- Text: trimmed of white space; an empty cell is missing.
- Number: ``[+-]digits[.fraction][e±exponent]``, with thousands separators only in groups of three
  (``1,200`` and ``12,345.5``; with ``decimal = ","``: ``1.200,5`` or ``1 200,5``). ``3,5`` is not 35: with a
  ``.`` decimal it is no number at all. An infinite value is an error; NaN (typed, or the text ``NaN``) is a
  missing value, as pandas writes one.
- Date-time: ISO 8601 ``YYYY-MM-DD`` (or ``YYYY/MM/DD``), optionally ``[T ]hh:mm[:ss[.fraction]]`` and a zone
  (``Z``, ``UTC``, ``GMT``, ``±hh``, ``±hh:mm``, ``±hhmm``). Without a zone it is local time in ``data.timezone``:
  a time skipped when clocks move forward is read as the first instant after the change, a time that happens
  twice as its first occurrence. It must lie between ``data.earliest`` and one day after now (a lead dated
  1900-01-01 or 9999-12-31 is a placeholder, not a date). Values are int64 microseconds since 1970 (UTC),
  which no plausible date can overflow.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Per-cell problems (0: fine or empty).
OK, UNREADABLE, TOO_EARLY, TOO_LATE = 0, 1, 2, 3

_CHUNK = 1 << 20  # rows per thread for the regular expressions, which dominate the cost on large files

_INT_PART = {".": r"(?:\d{1,3}(?:,\d{3})+|\d+)", ",": r"(?:\d{1,3}(?:[. \x{a0}\x{202f}]\d{3})+|\d+)"}
_NUMBER = {d: rf"^[+-]?(?:{p}(?:\{d}\d*)?|\{d}\d+)(?:[eE][+-]?\d+)?$" for d, p in _INT_PART.items()}
_GROUPING = {".": ",", ",": r"[. \x{a0}\x{202f}]"}
_DATETIME = (r"^(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})"
             r"(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?"
             r"\s*(?P<z>[zZ]|UTC|GMT|utc|gmt|[+-]\d{2}(?::?\d{2})?)?$")
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
US_PER_DAY = 86_400_000_000
_ZONE_RULES_US = 30_000_000_000 * 1_000_000  # about 950 years either side of 1970


def _chunked(fn, values: pa.Array) -> pa.Array:
    """Apply ``fn`` to slices of ``values`` on two threads (pyarrow compute releases the GIL)."""
    if len(values) <= _CHUNK:
        return fn(values)
    parts = [values.slice(i, _CHUNK) for i in range(0, len(values), _CHUNK)]
    with ThreadPoolExecutor(2) as pool:
        return pa.concat_arrays(list(pool.map(fn, parts)))


def as_strings(values) -> pa.Array:
    """Any column as one string array (numbers and dates by their text), chunks combined."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, pa.string(), from_pandas=True)
    if pa.types.is_large_string(values.type) or pa.types.is_string_view(values.type):
        return values.cast(pa.string())
    if not pa.types.is_string(values.type):
        return values.cast(pa.string())
    return values


def text(values) -> pa.Array:
    """Trimmed text; an empty cell is null."""
    s = pc.utf8_trim_whitespace(as_strings(values))
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def number(values, decimal: str = ".") -> tuple[pa.Array, np.ndarray]:
    """(float64 values, problem per cell). Typed numbers are only checked to be finite."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
                                         or pa.types.is_decimal(values.type)):
        x = values.cast(pa.float64())
        finite = pc.is_finite(x).fill_null(True).to_numpy(zero_copy_only=False)
        nan = pc.is_nan(x).fill_null(False).to_numpy(zero_copy_only=False)
        problem = np.where(finite | nan, OK, UNREADABLE).astype(np.int8)
        return pc.if_else(pa.array(finite & ~nan), x, pa.scalar(None, pa.float64())), problem
    if isinstance(values, pa.Array) and pa.types.is_boolean(values.type):
        present = values.is_valid().to_numpy(zero_copy_only=False)
        return pa.nulls(len(values), pa.float64()), np.where(present, UNREADABLE, OK).astype(np.int8)
    s = text(values)
    s = pc.if_else(pc.match_substring_regex(s, r"^[+-]?nan$", ignore_case=True), pa.scalar(None, pa.string()), s)

    def parse(part: pa.Array) -> pa.Array:
        ok = pc.match_substring_regex(part, _NUMBER[decimal])
        plain = pc.replace_substring_regex(pc.if_else(ok, part, pa.scalar(None, pa.string())), _GROUPING[decimal], "")
        if decimal == ",":
            plain = pc.replace_substring(plain, ",", ".")
        return pc.cast(plain, pa.float64())

    x = _chunked(parse, s)
    present = s.is_valid().to_numpy(zero_copy_only=False)
    read = x.is_valid().to_numpy(zero_copy_only=False)
    finite = pc.is_finite(x).fill_null(False).to_numpy(zero_copy_only=False)
    problem = np.where(present & ~(read & finite), UNREADABLE, OK).astype(np.int8)
    return pc.if_else(pa.array(read & finite), x, pa.scalar(None, pa.float64())), problem


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    return _MONTH_DAYS[np.clip(m, 1, 12) - 1] + (leap & (m == 2))


def _group(parts: pa.StructArray, name: str) -> pa.Array:
    """One group of a regular-expression match; a group that took no part in the match is null."""
    g = parts.field(name)
    return pc.if_else(pc.equal(g, ""), pa.scalar(None, pa.string()), g)


def _ints(column: pa.Array, default: int) -> np.ndarray:
    return pc.cast(column, pa.int64()).fill_null(default).to_numpy(zero_copy_only=False)


def timestamp(values, zone: str, earliest_us: int, latest_us: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 microseconds since 1970 UTC, problem per cell); missing cells are int64 min with problem OK."""
    never = np.iinfo(np.int64).min
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
        us, problem = _typed_timestamp(values, zone)
    else:
        us, problem = _parse_timestamp(text(values), zone)
    early = (problem == OK) & (us != never) & (us < earliest_us)
    late = (problem == OK) & (us != never) & (us > latest_us)
    problem = np.where(early, TOO_EARLY, np.where(late, TOO_LATE, problem)).astype(np.int8)
    return np.where(problem == OK, us, never), problem


def _typed_timestamp(values: pa.Array, zone: str) -> tuple[np.ndarray, np.ndarray]:
    never = np.iinfo(np.int64).min
    if pa.types.is_date(values.type):
        values = values.cast(pa.timestamp("s"))
    tz = values.type.tz
    ints = values.cast(pa.int64()).to_numpy(zero_copy_only=False)  # in the column's own unit
    present = values.is_valid().to_numpy(zero_copy_only=False)
    per_us = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0}[values.type.unit]
    us = np.where(present, ints // 1000 if per_us == 0 else ints * per_us, never)
    if tz is None:
        us = _local_to_utc(us, present, zone)
    return us, np.zeros(len(us), np.int8)


def _parse_timestamp(s: pa.Array, zone: str) -> tuple[np.ndarray, np.ndarray]:
    never = np.iinfo(np.int64).min
    parts = _chunked(lambda part: pc.extract_regex(part, _DATETIME), s)
    present = s.is_valid().to_numpy(zero_copy_only=False)
    matched = parts.is_valid().to_numpy(zero_copy_only=False) & present
    y, m, d = (_ints(_group(parts, k), 1) for k in "ymd")
    hh, mm, ss = (_ints(_group(parts, k), 0) for k in "HMS")
    frac = parts.field("f").fill_null("")  # "" where there is none
    digits = pc.utf8_length(frac).to_numpy(zero_copy_only=False)
    frac_us = _ints(pc.utf8_slice_codeunits(pc.binary_join_element_wise(frac, "000000", ""), 0, 6), 0)
    valid = (matched & (m >= 1) & (m <= 12) & (d >= 1) & (d <= _days_in_month(y, m)) & (hh <= 23) & (mm <= 59)
             & (ss <= 59) & (digits <= 9))
    days = _days_from_civil(np.where(valid, y, 1970), np.where(valid, m, 1), np.where(valid, d, 1))
    us = (((days * 24 + hh) * 60 + mm) * 60 + ss) * 1_000_000 + frac_us
    z = _group(parts, "z")
    has_zone = z.is_valid().to_numpy(zero_copy_only=False)
    offset = _offset_minutes(z)
    us = np.where(has_zone, us - offset * 60_000_000, us)
    local = valid & ~has_zone
    if local.any():
        us = np.where(local, _local_to_utc(np.where(local, us, 0), local, zone), us)
    problem = np.where(present & ~valid, UNREADABLE, OK).astype(np.int8)
    return np.where(valid, us, never), problem


def _offset_minutes(z: pa.Array) -> np.ndarray:
    """Minutes east of UTC of a zone suffix (Z/UTC/GMT: 0; +hh, +hh:mm, +hhmm)."""
    sign = np.where(pc.starts_with(z, "-").fill_null(False).to_numpy(zero_copy_only=False), -1, 1)
    numeric = pc.replace_substring(pc.replace_substring_regex(z, r"^[+-]", ""), ":", "")
    numeric = pc.if_else(pc.match_substring_regex(numeric, r"^\d+$").fill_null(False), numeric,
                         pa.scalar(None, pa.string()))
    hours = _ints(pc.utf8_slice_codeunits(numeric, 0, 2), 0)
    minutes = _ints(pc.if_else(pc.equal(pc.utf8_length(numeric), 4), pc.utf8_slice_codeunits(numeric, 2, 4),
                               pa.scalar(None, pa.string())), 0)
    return sign * (hours * 60 + minutes)


def _local_to_utc(us: np.ndarray, mask: np.ndarray, zone: str) -> np.ndarray:
    """Wall-clock microseconds in ``zone`` to UTC, for the cells in ``mask`` (others are returned as given)."""
    if zone == "UTC":
        return us
    # Arrow knows a zone's rules for the years 1000-3000 here; cells outside them are out of any plausible range.
    inside = mask & (np.abs(us) < _ZONE_RULES_US)
    naive = pa.array(np.where(inside, us, 0), pa.int64()).cast(pa.timestamp("us"))
    zoned = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="latest")
    return np.where(inside, zoned.cast(pa.int64()).to_numpy(zero_copy_only=False), us)


def to_timestamp_array(us: np.ndarray) -> pa.Array:
    """int64 microseconds (int64 min: missing) as an Arrow timestamp[us, UTC] array."""
    never = np.iinfo(np.int64).min
    return pa.array(us, pa.int64(), mask=us == never).cast(pa.timestamp("us", "UTC"))


def valid_utf8(values: list) -> np.ndarray:
    """Which strings can be encoded as UTF-8 (a JSON lone surrogate such as "\\ud800" cannot)."""
    try:
        pa.array(values, pa.string())
        return np.ones(len(values), bool)
    except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        return np.array([not isinstance(v, str) or _encodes(v) for v in values], bool)


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
