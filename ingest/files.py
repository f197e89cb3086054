"""Reading export files as they are: format, encoding, delimiter, header. Nothing here knows what a cell means
(that is :mod:`leadscore.cells`) or which rows are kept (:mod:`ingest.canonical`)."""

from __future__ import annotations

import codecs
import csv
import difflib
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore import cells
from leadscore.config import FileTable
from leadscore.errors import DataError

log = logging.getLogger("leadscore")


def first_invalid_utf8(path: Path) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence in the whole file, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return offset + exc.start
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return offset + exc.start
    return None


def _sniff(path: Path, table: FileTable) -> tuple[str, str]:
    """(encoding, delimiter). Without a configured encoding: "utf-8" (or "utf-8-sig") if the whole file is valid
    UTF-8, else "cells": each cell is read as UTF-8 where it is valid and as Windows-1252 where it is not, so
    one stray byte never changes how the other cells read (a whole latin-1 file reads right too)."""
    with path.open("rb") as fh:
        head = fh.read(65_536)
    encoding = table.encoding
    if encoding is None:
        if first_invalid_utf8(path) is None:
            encoding = "utf-8-sig" if head.startswith(b"\xef\xbb\xbf") else "utf-8"
        else:
            encoding = "cells"
    return encoding, table.delimiter or guess_delimiter(head)


def guess_delimiter(head: bytes) -> str:
    """The commonest of , ; tab | in the first line."""
    first = head.split(b"\n", 1)[0].decode("latin-1")
    return max([",", ";", "\t", "|"], key=first.count)


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return value.decode("cp1252")
        except UnicodeDecodeError:
            return value.decode("latin-1")  # the five bytes Windows-1252 leaves undefined


def _decode_cells(column: pa.ChunkedArray) -> tuple[pa.Array, int]:
    """A column read as latin-1 (every byte one character, nothing lost) back to the text each cell meant (see
    :func:`_sniff`). Only cells with non-ASCII bytes are looked at. Returns the text and how many cells were not
    UTF-8."""
    values = column.combine_chunks()
    odd = np.flatnonzero(pc.invert(pc.string_is_ascii(values)).fill_null(False).to_numpy(zero_copy_only=False))
    if not len(odd):
        return values, 0
    raw = [v.encode("latin-1") for v in values.take(pa.array(odd)).to_pylist()]
    decoded = [_decode(b) for b in raw]
    fixed = sum(1 for b, d in zip(raw, decoded) if d.encode("utf-8") != b)
    text = values.to_numpy(zero_copy_only=False).astype(object)
    text[odd] = decoded
    return pa.array(text, pa.string()), fixed


def decimal_of(table: FileTable, delimiter: str | None) -> str:
    return cells.decimal_for(table.decimal, delimiter)


def export_format(table: FileTable, key: str) -> tuple[Path, str]:
    """The file's path, and whether it is read as csv or parquet. A missing file is the user's error."""
    path = table.path
    if not path.is_file():
        raise DataError(f"{key}.path: file {path} not found")
    fmt = table.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    return path, fmt


def read_export(table: FileTable, key: str, mapped: set[str] = frozenset()) -> tuple[pa.Table, dict]:
    """Read one export file as given, and say how it was read. CSV cells stay text; the cell rules parse them.

    A header that names a column twice is an error if the column is mapped (which one would be meant?);
    otherwise the later copies are read as ``<name> (2)``, ``<name> (3)`` and the log says so. A line with more
    or fewer fields than the header is quarantined as written (``info["malformed"]``), not read shifted."""
    path, fmt = export_format(table, key)
    try:
        if fmt == "parquet":
            raw = pq.ParquetFile(path).read()  # pq.read_table refuses a repeated name (a mapped one is, below)
            check_unique(raw.column_names, mapped, key, path)
            return raw, {"format": "parquet"}
        encoding, delimiter = _sniff(path, table)
        names = header_names(path, encoding, delimiter, key, mapped)

        raw, malformed, fixed = parse_csv(path, names, encoding, delimiter, skip_rows=1)
        if encoding == "cells":
            encoding = cells_encoding(key, path, fixed)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise unreadable(key, path, fmt, exc) from None
    info = {"format": "csv", "encoding": encoding, "delimiter": delimiter, "decimal": decimal_of(table, delimiter)}
    if malformed:
        warn_malformed(key, path, len(malformed), len(names))
        info["malformed"] = malformed
    return raw, info


def unreadable(key: str, path: Path, fmt: str, exc: Exception) -> DataError:
    """The error for an export file that cannot be read as its format: the key, the file and the first line of
    the reader's message."""
    return DataError(f"{key}.path: cannot read {path} as {fmt.upper()}: {str(exc).splitlines()[0]}")


def cells_encoding(key: str, path: Path, fixed: int) -> str:
    """Say that a file was read cell by cell; its encoding as the manifest gives it."""
    setting = f"{key}.encoding" if key.startswith("data.") else "data.<table>.encoding in the config"
    log.warning("%s: %s is not all UTF-8: %s cells read as Windows-1252 (set %s if the whole file has another "
                "encoding)", key, path.name, f"{fixed:,}", setting)
    return f"utf-8, {fixed:,} cells windows-1252"


def warn_malformed(key: str, path: Path, lines: int, fields: int) -> None:
    log.warning("%s: %s lines of %s do not have the header's %d fields; they are quarantined as written",
                key, f"{lines:,}", path.name, fields)


def parse_csv(source, names: list[str], encoding: str, delimiter: str, skip_rows: int = 0,
              lines: list[int] | None = None) -> tuple[pa.Table, list[tuple[str, str]], int]:
    """CSV rows (a path, or a file-like block of whole lines) as text columns named ``names``. ``encoding`` "cells"
    reads each cell as UTF-8 where it is valid and Windows-1252 where not (:func:`_sniff`). Returns the rows, the
    lines that do not have the header's fields (text, reason), and how many cells were not UTF-8. With ``lines``,
    the file is read on one thread and each of those lines' row number (1-based) is added to it."""
    malformed: list[tuple[str, str]] = []

    def skip(row) -> str:
        malformed.append((row.text, f"{row.actual_columns} fields where the header has {row.expected_columns}"))
        if lines is not None:
            lines.append(row.number)
        return "skip"

    raw = pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(encoding="latin-1" if encoding == "cells" else encoding.replace("-sig", ""),
                                       block_size=16 << 20, column_names=names, skip_rows=skip_rows,
                                       use_threads=lines is None),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    fixed = 0
    if encoding == "cells":
        decoded = [_decode_cells(c) for c in raw.columns]
        raw = pa.table([d for d, _ in decoded], names=names)
        malformed = [(_decode(text.encode("latin-1")), why) for text, why in malformed]
        fixed = sum(n for _, n in decoded)
    return raw, malformed, fixed


def header_names(path: Path, encoding: str, delimiter: str, key: str, mapped: set[str]) -> list[str]:
    """The header's column names, each once (:func:`_unique_names`)."""
    return _unique_names(_header_names(path, encoding, delimiter), mapped, key, path)


def _header_names(path: Path, encoding: str, delimiter: str) -> list[str]:
    if encoding != "cells":
        with path.open("r", encoding=encoding, newline="", errors="strict") as fh:
            return next(csv.reader(fh, delimiter=delimiter), [])
    with path.open("r", encoding="utf-8-sig", newline="", errors="surrogateescape") as fh:  # a BOM is no name
        names = next(csv.reader(fh, delimiter=delimiter), [])
    return [_decode(n.encode("utf-8", "surrogateescape")) for n in names]


def check_unique(names: list[str], mapped: set[str], key: str, path: Path) -> None:
    twice = sorted({n for n in names if names.count(n) > 1} & set(mapped))
    if twice:
        where = {n: [i + 1 for i, m in enumerate(names) if m == n] for n in twice}
        raise DataError(f"{key}.path: the header of {path.name} names column {twice[0]!r} more than once (columns "
                        f"{', '.join(map(str, where[twice[0]]))}); rename one of them in the export")


def _unique_names(names: list[str], mapped: set[str], key: str, path: Path) -> list[str]:
    check_unique(names, mapped, key, path)
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] == 1:
            out.append(name)
            continue
        renamed = f"{name} ({seen[name]})"
        while renamed in names or renamed in out:
            renamed += "'"
        log.warning("%s: %s names column %r more than once; copy %d is read as %r (not mapped, so not used)",
                    key, path.name, name, seen[name], renamed)
        out.append(renamed)
    return out


def require_columns(raw: pa.Table, mapping: dict[str, str], key: str) -> None:
    present = set(raw.column_names)
    for cfg_key, column in mapping.items():
        if column not in present:
            close = difflib.get_close_matches(column, raw.column_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the file has {raw.column_names[:12]}"
            raise DataError(f"{key}.{cfg_key}: column {column!r} not found in the export{hint}")
