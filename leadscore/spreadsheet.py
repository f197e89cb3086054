"""The one writer of CSV files that people open in spreadsheets.

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). As OWASP recommends, such a cell is
written with a leading apostrophe, which makes the spreadsheet show it as text; the same holds after leading
spaces and for the full-width forms of those characters. Numbers stay numbers. Parquet files, the SQL table and
the API keep values as they are: only CSV is read by spreadsheets.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from leadscore.paths import atomic_write

# Leading white space and control characters first: a spreadsheet may skip them before it sees the "=". Escapes
# that Arrow's RE2 and Python's re read alike, and literal characters beyond Latin-1.
FORMULA_START = (r"^(?:[\t\r]|[\x00-\x20\x7f\x85\xa0" + "\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
                 + r"]*[=+\-@" + "\uff1d\uff0b\uff0d\uff20" + "])")


def neutralise(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text cells that a spreadsheet would execute, prefixed with an apostrophe; other cells unchanged."""
    risky = pc.match_substring_regex(column, FORMULA_START).fill_null(False)
    quote, empty = pa.scalar("'", column.type), pa.scalar("", column.type)
    return pc.if_else(risky, pc.binary_join_element_wise(quote, column, empty), column)


def spreadsheet_table(table: pa.Table) -> pa.Table:
    """Every text column neutralised; timestamps as ISO 8601 with a Z, which spreadsheets and pandas read."""
    columns = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type):
            col = pc.strftime(col.cast(pa.timestamp("s", "UTC"), safe=False), format="%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = neutralise(col)
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def write_csv(table, path: Path, header: bool = True) -> None:
    """``table`` (Arrow or pandas) as a spreadsheet-safe CSV file, written atomically. ``header=False``: the rows
    alone, for a part of a file joined from parts."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_write(path) as tmp:
        pacsv.write_csv(spreadsheet_table(table), tmp, pacsv.WriteOptions(include_header=header))
