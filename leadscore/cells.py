"""The cell rules: how one cell of an export, or one field of an API request, becomes a value.

One set of rules, used by ingest for every row of every file and by the real-time API for every field, so a
cell means the same thing wherever it arrives. Each rule looks at one cell only: what other cells hold never
changes how a cell is read.

- Text: trimmed of white space (the characters in ``WHITESPACE``); an empty cell is missing.
- Number: ``[+-]digits[.fraction][e±exponent]``, with thousands separators only in groups of three
  (``1,200`` and ``12,345.5``; with ``decimal = ","``: ``1.200,5`` or ``1 200,5``). ``3,5`` is not 35: with a
  ``.`` decimal it is no number at all. An infinite value is an error; NaN (typed, or the text ``NaN``) is a
  missing value, as pandas writes one.
- Date-time: ISO 8601 ``YYYY-MM-DD`` (or ``YYYY/MM/DD``, or ``DD.MM.YYYY``; ``DD/MM/YYYY`` or ``MM/DD/YYYY``, also
  with dashes, only with ``data.date_order`` = "DMY" or "MDY": 01/02/2025 is ambiguous), optionally
  ``[T ]hh:mm[:ss[.fraction]]`` and a zone
  (``Z``, ``UTC``, ``GMT``, ``±hh``, ``±hh:mm``, ``±hhmm``, at most 14 hours from UTC). Without a zone it is
  local time in ``data.timezone``: a time skipped when clocks move forward is read as the first instant after the
  change, a time that happens twice as its first occurrence. It must lie between ``data.earliest`` and one day
  after now (a lead dated 1900-01-01 or 9999-12-31 is a placeholder, not a date). A cell of 10 or 13 digits
  alone (or a typed number in those ranges) is seconds or milliseconds since 1970 (UTC). Values are int64
  microseconds since 1970 (UTC), which no plausible date can overflow.

A rule is its patterns (below) and the numpy arithmetic after them. Which engine matches the patterns depends on
how many cells there are: Arrow's RE2 for a column (vectorised, on two threads), Python's ``re`` for the few
fields of an API request, where Arrow's per-call cost would dominate. The patterns are written in the syntax
both engines read alike, and a test holds the two readings equal on random strings.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Per-cell problems (0: fine or empty).
OK, UNREADABLE, TOO_EARLY, TOO_LATE = 0, 1, 2, 3
NEVER = np.iinfo(np.int64).min
US_PER_DAY = 86_400_000_000  # a day is 24 hours everywhere (see leadscore.duck.days)

SMALL = 64  # up to this many cells, Python's re matches the patterns; beyond, Arrow's RE2
_CHUNK = 1 << 20  # rows per thread for RE2, which dominates the cost on large files
_ZONE_RULES_US = 30_000_000_000 * 1_000_000  # about 950 years either side of 1970

# Literal characters beyond ASCII (RE2 knows no \u escapes), so that both engines read the patterns alike.
WHITESPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
             "\u2028\u2029\u202f\u205f\u3000\ufeff"
_SPACES = " \xa0\u202f"  # thousands separators of "," locales besides "."
_INT_PART = {".": r"(?:\d{1,3}(?:,\d{3})+|\d+)", ",": r"(?:\d{1,3}(?:[." + _SPACES + r"]\d{3})+|\d+)"}
NUMBER = {d: rf"^[+-]?(?:{p}(?:\{d}\d*)?|\{d}\d+)(?:[eE][+-]?\d+)?$" for d, p in _INT_PART.items()}
GROUPING = {".": ",", ",": "[." + _SPACES + "]"}
NAN = r"^[+-]?[nN][aA][nN]$"
# ISO's year first, or the day first with dots (31.12.2025, as much of Europe writes it: no one writes the month
# first with dots, so it is not ambiguous the way 01/02/2025 is), or the year last with slashes or dashes (p and
# q): the day or the month first, as data.date_order says (without it, such a cell is unreadable).
DATETIME = (r"^(?:(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})|(?P<d2>\d{1,2})\.(?P<m2>\d{1,2})\.(?P<y2>\d{4})"
            r"|(?P<p>\d{1,2})[-/](?P<q>\d{1,2})[-/](?P<y3>\d{4}))"
            r"(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?"
            r"[ \t]*(?P<z>[zZ]|UTC|GMT|utc|gmt|[+-]\d{2}(?::?\d{2})?)?$")
_GROUPS = ("y", "m", "d", "y2", "m2", "d2", "p", "q", "y3", "H", "M", "S", "f", "z")
_INTS = ("y", "m", "d", "y2", "m2", "d2", "p", "q", "y3", "H", "M", "S")
# Seconds (10 digits: 2001-09-09 to 2286) or milliseconds (13) since 1970 in UTC, as systems log them.
EPOCH = r"^(?:\d{10}|\d{13})$"
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# ASCII: RE2's \d is 0-9 only, and Python's must read the few cells of an API request the same way.
_RE = {p: re.compile(p, re.ASCII) for p in (*NUMBER.values(), *GROUPING.values(), NAN, DATETIME, EPOCH)}


def us_of(t) -> int:
    """A datetime (naive means UTC) as int64 microseconds since 1970."""
    from datetime import timezone

    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def decimal_for(setting: str, delimiter: str | None) -> str:
    """The decimal separator of numbers written as text: as configured, or "," for a file delimited by ";"
    (the locales that write ";" write decimal commas), else "."."""
    if setting != "auto":
        return setting
    return "," if delimiter == ";" else "."


# --- the two readers of text cells ------------------------------------------------------------------------

def _cells(values) -> pa.Array | list:
    """A column as text: an Arrow string array for many cells, a list of str/None for a few."""
    if isinstance(values, list) and len(values) <= SMALL and all(v is None or isinstance(v, str) for v in values):
        return values
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, pa.string(), from_pandas=True)
    if len(values) <= SMALL and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return values.to_pylist()
    return values if pa.types.is_string(values.type) else values.cast(pa.string())


def _chunked(fn, values: pa.Array) -> pa.Array:
    """Apply ``fn`` to slices of ``values`` on two threads (pyarrow compute releases the GIL)."""
    if len(values) <= _CHUNK:
        return fn(values)
    parts = [values.slice(i, _CHUNK) for i in range(0, len(values), _CHUNK)]
    with ThreadPoolExecutor(2) as pool:
        return pa.concat_arrays(list(pool.map(fn, parts)))


def as_strings(values) -> pa.Array:
    """Any column as one string array (numbers and dates by their text), chunks combined."""
    cells = _cells(values)
    return pa.array(cells, pa.string()) if isinstance(cells, list) else cells


def _trim(cells):
    if isinstance(cells, list):
        return [None if v is None else (v.strip(WHITESPACE) or None) for v in cells]
    s = pc.utf8_trim(cells, characters=WHITESPACE)
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def text(values) -> pa.Array:
    """Trimmed text; an empty cell is null."""
    return as_strings(_trim(_cells(values)))


def _matches(cells, pattern: str) -> np.ndarray:
    if isinstance(cells, list):
        rx = _RE[pattern]
        return np.array([v is not None and rx.search(v) is not None for v in cells], bool)
    found = _chunked(lambda part: pc.match_substring_regex(part, pattern), cells)
    return found.fill_null(False).to_numpy(zero_copy_only=False)


def _floats(cells, ok: np.ndarray, decimal: str) -> np.ndarray:
    """The numbers written in the cells ``ok`` marks as matching the number pattern (NaN elsewhere)."""
    if isinstance(cells, list):
        rx = _RE[GROUPING[decimal]]
        plain = [rx.sub("", v).replace(",", ".") if good else None for v, good in zip(cells, ok)]
        return np.array([float(v) if v is not None else np.nan for v in plain], np.float64)

    def parse(part: pa.Array) -> pa.Array:
        plain = pc.replace_substring_regex(part, GROUPING[decimal], "")
        return pc.cast(pc.replace_substring(plain, ",", ".") if decimal == "," else plain, pa.float64())

    kept = pc.if_else(pa.array(ok), cells, pa.scalar(None, pa.string()))
    return _chunked(parse, kept).fill_null(np.nan).to_numpy(zero_copy_only=False)


def _extract(cells) -> dict[str, np.ndarray]:
    """The date-time pattern's groups as arrays: ``matched`` (bool), the parts as int64 (0 where absent),
    ``f`` the fraction's digits as text and ``z`` the zone as text (object arrays, None where absent)."""
    if isinstance(cells, list):
        rx = _RE[DATETIME]
        found = [rx.search(v) if v is not None else None for v in cells]
        groups = {g: np.array([(m.group(g) or None) if m else None for m in found], object) for g in _GROUPS}
        matched = np.array([m is not None for m in found], bool)
    else:
        parts = _chunked(lambda part: pc.extract_regex(part, DATETIME), cells)
        matched = parts.is_valid().to_numpy(zero_copy_only=False)
        groups = {}
        for g in _GROUPS:
            col = parts.field(g)
            col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)  # "": took no part in the match
            groups[g] = col if g in "fz" else pc.cast(col, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    out = {"matched": matched}
    for g in _INTS:
        v = groups[g]
        out[g] = v if not isinstance(v, np.ndarray) or v.dtype != object else \
            np.array([int(x) if x is not None else 0 for x in v], np.int64)
    for g in "ymd":  # one of the date forms took part, the others' groups are 0
        out[g] = out[g] + out.pop(f"{g}2")
    out["f"], out["z"] = groups["f"], groups["z"]
    return out


def _epoch_us(cells, epoch: np.ndarray) -> np.ndarray:
    """Microseconds of the cells ``epoch`` marks (seconds, or milliseconds when 13 digits); 0 elsewhere."""
    if isinstance(cells, list):
        return np.array([int(v) * (1000 if len(v) == 13 else 1_000_000) if e else 0 for v, e in zip(cells, epoch)],
                        np.int64)
    kept = pc.if_else(pa.array(epoch), cells, pa.scalar(None, pa.string()))
    n = pc.cast(kept, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    millis = pc.equal(pc.utf8_length(kept), 13).fill_null(False).to_numpy(zero_copy_only=False)
    return np.where(millis, n * 1000, n * 1_000_000)


def _per_value(column, fn, kind) -> np.ndarray:
    """``fn`` of each distinct value of a text column (object array or Arrow), mapped back to every cell. Zone
    suffixes take few distinct values, so this costs a handful of Python calls, not one a cell."""
    if isinstance(column, np.ndarray):
        return np.array([fn(v) for v in column], kind)
    distinct = pc.unique(column)
    table = np.array([fn(v) for v in distinct.to_pylist()], kind)
    at = pc.index_in(column, value_set=distinct).to_numpy(zero_copy_only=False)
    return table[np.nan_to_num(at, nan=0).astype(np.int64)] if len(table) else np.zeros(len(at), kind)


def _offset_minutes(zone: str | None) -> int:
    """Minutes east of UTC of a zone suffix (Z/UTC/GMT: 0; +hh, +hh:mm, +hhmm); a value no clock uses (such
    as +12:75 or +99) gives one out of range."""
    if zone is None or zone.upper() in ("Z", "UTC", "GMT"):
        return 0
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return (-1 if zone[0] == "-" else 1) * (hours * 60 + minutes) if minutes <= 59 else 99 * 60


def _fraction(f) -> tuple[np.ndarray, np.ndarray]:
    """(digits, microseconds) of the fraction-of-second group; a fraction takes too many distinct values to be
    read value by value, so a column is read with Arrow's string kernels."""
    if isinstance(f, np.ndarray):
        return (np.array([len(v or "") for v in f], np.int64),
                np.array([int((v or "")[:6].ljust(6, "0")) for v in f], np.int64))
    f = f.fill_null("")
    digits = pc.utf8_length(f).to_numpy(zero_copy_only=False).astype(np.int64)
    us = pc.cast(pc.utf8_slice_codeunits(pc.binary_join_element_wise(f, "000000", ""), 0, 6), pa.int64())
    return digits, us.to_numpy(zero_copy_only=False)


# --- the rules ---------------------------------------------------------------------------------------------

def number(values, decimal: str = ".") -> tuple[pa.Array, np.ndarray]:
    """(float64 values, problem per cell). Typed numbers are only checked to be finite."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and pa.types.is_boolean(values.type):
        present = values.is_valid().to_numpy(zero_copy_only=False)
        return pa.nulls(len(values), pa.float64()), np.where(present, UNREADABLE, OK).astype(np.int8)
    if isinstance(values, pa.Array) and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
                                         or pa.types.is_decimal(values.type)):
        x = values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        present = ~np.isnan(x)
        ok = np.isfinite(x)
    else:
        cells = _trim(_cells(values))
        missing = np.array([v is None for v in cells], bool) if isinstance(cells, list) else \
            cells.is_null().to_numpy(zero_copy_only=False)
        present = ~missing & ~_matches(cells, NAN)
        matched = present & _matches(cells, NUMBER[decimal])
        x = _floats(cells, matched, decimal)
        ok = matched & np.isfinite(x)
    problem = np.where(present & ~ok, UNREADABLE, OK).astype(np.int8)
    return pa.array(np.where(ok, x, np.nan), pa.float64(), mask=~ok), problem


def timestamp(values, zone: str, earliest_us: int, latest_us: int,
              order: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int64 microseconds since 1970 UTC, problem per cell); missing cells are NEVER with problem OK. ``order``:
    "DMY" or "MDY" for dates written with the year last (``data.date_order``)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
        us, problem = _typed_timestamp(values, zone)
    elif isinstance(values, pa.Array) and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        us, problem = _epoch_numbers(values)
    else:
        us, problem = _parse_timestamp(_trim(_cells(values)), zone, order)
    early = (problem == OK) & (us != NEVER) & (us < earliest_us)
    late = (problem == OK) & (us != NEVER) & (us > latest_us)
    problem = np.where(early, TOO_EARLY, np.where(late, TOO_LATE, problem)).astype(np.int8)
    return np.where(problem == OK, us, NEVER), problem


def _epoch_numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A typed number column (Parquet, or a float column pandas wrote with gaps) by the epoch rule: seconds in
    the 10-digit range, milliseconds in the 13-digit one, anything else unreadable. Text would not do: Arrow
    writes 1700000000123.0 as "1.700000000123e+12"."""
    x = values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    present = ~np.isnan(x)
    seconds = present & (x >= 1e9) & (x < 1e10)
    millis = present & (x >= 1e12) & (x < 1e13)
    us = np.where(seconds, np.round(x * 1e6), np.where(millis, np.round(x * 1e3), 0)).astype(np.int64)
    ok = seconds | millis
    return np.where(ok, us, NEVER), np.where(present & ~ok, UNREADABLE, OK).astype(np.int8)


def _typed_timestamp(values: pa.Array, zone: str) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_date(values.type):
        values = values.cast(pa.timestamp("s"))
    ints = values.cast(pa.int64()).to_numpy(zero_copy_only=False)  # in the column's own unit
    present = values.is_valid().to_numpy(zero_copy_only=False)
    per_us = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0}[values.type.unit]
    us = np.where(present, ints // 1000 if per_us == 0 else ints * per_us, NEVER)
    if values.type.tz is None:
        us = _local_to_utc(us, present, zone)
    return us, np.zeros(len(us), np.int8)


def _parse_timestamp(cells, zone: str, order: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    present = np.array([v is not None for v in cells], bool) if isinstance(cells, list) else \
        cells.is_valid().to_numpy(zero_copy_only=False)
    g = _extract(cells)
    y, m, d, hh, mm, ss = (g[k] for k in "ymdHMS")
    year_last = g["y3"] > 0
    if order is None:  # 01/02/2025: the first of February or the second of January?
        g["matched"] = g["matched"] & ~year_last
    elif order not in ("DMY", "MDY"):
        raise ValueError(f"date order {order!r}: DMY or MDY")
    else:
        day, month = (g["p"], g["q"]) if order == "DMY" else (g["q"], g["p"])
        y, m, d = y + g["y3"], m + month, d + day
    digits, fraction_us = _fraction(g["f"])
    offset = _per_value(g["z"], _offset_minutes, np.int64)
    has_zone = _per_value(g["z"], lambda z: z is not None, bool)
    valid = (g["matched"] & present & (m >= 1) & (m <= 12) & (d >= 1) & (d <= _days_in_month(y, m)) & (hh <= 23)
             & (mm <= 59) & (ss <= 59) & (digits <= 9) & (np.abs(offset) <= 14 * 60))
    days = _days_from_civil(np.where(valid, y, 1970), np.where(valid, m, 1), np.where(valid, d, 1))
    us = (((days * 24 + hh) * 60 + mm) * 60 + ss) * 1_000_000 + fraction_us
    us = np.where(has_zone, us - offset * 60_000_000, us)
    local = valid & ~has_zone
    if local.any():
        us = np.where(local, _local_to_utc(np.where(local, us, 0), local, zone), us)
    epoch = present & ~valid & _matches(cells, EPOCH)
    if epoch.any():
        us = np.where(epoch, _epoch_us(cells, epoch), us)
        valid = valid | epoch
    problem = np.where(present & ~valid, UNREADABLE, OK).astype(np.int8)
    return np.where(valid, us, NEVER), problem


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
    """int64 microseconds (NEVER: missing) as an Arrow timestamp[us, UTC] array."""
    return pa.array(us, pa.int64(), mask=us == NEVER).cast(pa.timestamp("us", "UTC"))


def valid_utf8(values: list) -> np.ndarray:
    """Which strings can be encoded as UTF-8 (a JSON lone surrogate such as "\\ud800" cannot)."""
    try:
        "".join(v for v in values if isinstance(v, str)).encode("utf-8")  # one encode for the common case
        return np.ones(len(values), bool)
    except UnicodeEncodeError:
        return np.array([not isinstance(v, str) or _encodes(v) for v in values], bool)


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
