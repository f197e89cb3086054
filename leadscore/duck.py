"""duckdb set-up and the small SQL helpers that ingest and features share."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa


def connect(timezone: str, spill_dir: Path, memory_limit: str | None = None,
            threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection that reads zone-less timestamps in ``timezone`` and spills to ``spill_dir``
    (never duckdb's default, a `.tmp` folder in the working directory); ``threads``: at most that many (a Dask
    worker's share of the cores), else one per core."""
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET TimeZone = {literal(timezone)}")
    spill_dir.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {literal(str(spill_dir))}")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {literal(memory_limit)}")
        con.execute("SET preserve_insertion_order = false")  # less memory; callers order with ORDER BY
    return con


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def days(n: int) -> str:
    """An interval of ``n`` days of 24 hours. duckdb adds ``INTERVAL n DAY`` on the local calendar of the session's
    time zone (a day across a clock change is 23 or 25 hours), which the array plans and the tests do not."""
    return f"INTERVAL ({int(n)} * 24) HOUR"


def ident(name: str) -> str:
    """A quoted SQL identifier (export columns may hold spaces, quotes and colons)."""
    return '"' + name.replace('"', '""') + '"'


def scalar(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchall()[0][0]


def utc_timestamps(table: pa.Table) -> pa.Table:
    """Every timestamp column as microseconds in UTC, whatever zone duckdb handed back."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("us", "UTC")))
    return table
