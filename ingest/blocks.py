"""Ingest on a Dask cluster (``[engine] kind = "dask"``): the export read in blocks on the workers, with the
checks and the row accounting of :mod:`ingest.canonical`, the same rows and the same quarantine files.

1. **Blocks.** A CSV file is cut into byte ranges that end at a line break outside quotes (each worker counts
   the quotes of its range; the driver adds them up, so no worker reads another's range), a Parquet file into
   runs of row groups. The driver reads only the header.
2. **Rows.** Each block is parsed and checked by the rules that read a row alone (:func:`lead_cells`, ...):
   failing rows go to the block's quarantine part, the others to Parquet parts partitioned by a hash of the
   lead id, with their block and row number and their cells as read.
3. **Partitions.** Each partition holds a lead's rows of every file, so the checks between rows run there:
   duplicate lead ids (the first row in file order is kept), events of unknown leads, outcomes dated before
   their lead. Stage spellings are settled on the driver from every block's first use of each. Each partition
   writes its part of every canonical table (``<table>.parquet/part-<p>.parquet``, its rows in file order): the
   partitions the sharded features build on (:mod:`features.sharded`), as many as they want.
4. **Quarantine.** The driver gathers the quarantine parts into the one-machine ingest's record of quarantined
   rows (``IngestResult.quarantined``), numbering each row by its place in the file; ``write_quarantine`` writes
   the files from it, as for one machine.

The home must be on storage the driver and every worker see at the same path, as for the sharded features.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.canonical import (ACTIVITIES, DUPLICATE_LEAD, OUTCOMES, Checks, IngestResult, Quarantined,
                              activity_cells, activity_mapping, activity_relations, configured_stages, dated_changes,
                              later_duplicates, lead_cells, lead_mapping, log_spellings, malformed_table,
                              one_spelling, outcome_cells, outcome_mapping, outcome_relations, read_campaigns,
                              spelling_map)
from ingest.files import (cells_encoding, check_unique, decimal_of, export_format, first_invalid_utf8,
                          guess_delimiter, header_names, parse_csv, require_columns, unreadable, warn_malformed)
from leadscore import cells
from leadscore.cluster import gather_all, partition_count, partition_sql, total_threads
from leadscore.config import Config, FileTable
from leadscore.paths import part_name, replace_table, write_parquet_atomic

log = logging.getLogger("leadscore")

BLOCK_BYTES = 64 << 20  # a block's share of a CSV file; about 4x that in a worker's memory while it is checked
ROW_BYTES = 64  # a Parquet block holds runs of row groups of about block_bytes / ROW_BYTES rows (1M by default)
# Codecs in which a quote and a line break are single bytes that no other character contains: a file in any
# other one is read as one block.
SPLITTABLE = {"utf-8", "utf-8-sig", "ascii", "mac-roman", *(f"iso8859-{i}" for i in range(1, 17)),
              *(f"cp{i}" for i in range(1250, 1259))}
TABLES = ("leads", "outcomes", "activities")
BLOCK, ROW = "leadscore:block", "leadscore:row"  # helper columns of the parts: where each row was read
LATE = "leadscore:late"  # a stage change's reason from a check that comes after those against its lead
RAW = "raw:"  # a part's cells as read, for the quarantine file: raw:0, raw:1, ... (header names may repeat)


@dataclass(frozen=True)
class FilePlan:
    """How one export file is read in blocks."""

    name: str  # leads, outcomes or activities
    key: str  # data.leads, ...
    path: Path
    format: str  # csv or parquet
    names: tuple[str, ...]
    encoding: str | None  # configured, else None: each block is read as UTF-8, or cell by cell if it is not
    header_encoding: str  # utf-8, utf-8-sig, cells or the configured one
    delimiter: str
    blocks: tuple[tuple[int, int], ...]  # CSV: byte ranges ((0, -1): the whole file); Parquet: row-group ranges
    rows_guess: int = 0  # Parquet: its rows; CSV: from the lines of its first megabyte


# --- 1. blocks -----------------------------------------------------------------------------------------

def _header_end(path: Path) -> int:
    """The byte after the header line (its first line break outside quotes)."""
    size, parity, step = path.stat().st_size, 0, 1 << 20
    for start in range(0, size, step):
        quotes, even, odd = _scan(path, start, min(start + step, size))
        cut = even if parity == 0 else odd
        if cut is not None:
            return cut
        parity ^= quotes
    return size


def _scan(path: Path, start: int, end: int) -> tuple[int, int | None, int | None]:
    """Quotes in ``[start, end)``, and the first line breaks after an even and after an odd number of them (the
    byte after each): which one ends a line depends on the quotes before ``start``."""
    with path.open("rb") as fh:
        fh.seek(start)
        buf = np.frombuffer(fh.read(end - start), np.uint8)
    if not len(buf):
        return 0, None, None
    parity = np.bitwise_xor.accumulate((buf == 34).view(np.uint8))
    breaks = buf == 10
    even, odd = np.flatnonzero(breaks & (parity == 0)), np.flatnonzero(breaks & (parity == 1))
    return (int(parity[-1]), start + int(even[0]) + 1 if len(even) else None,
            start + int(odd[0]) + 1 if len(odd) else None)


def _csv_ranges(client, path: Path, first: int, block_bytes: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    if size <= first:
        return [(first, first)]
    starts = list(range(first, size, block_bytes))
    scans = gather_all(client, [client.submit(_scan, path, s, min(s + block_bytes, size), pure=False) for s in starts])
    if sum(q for q, _, _ in scans) % 2:  # an unclosed quote: where lines end is for the parser to say, whole
        return [(first, size)]
    cuts, parity = [first], 0
    for i, (quotes, even, odd) in enumerate(scans):
        if i:  # the first range starts right after the header
            cut = even if parity == 0 else odd
            if cut is not None and cut < size:
                cuts.append(cut)
        parity ^= quotes
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def plan_file(client, name: str, table: FileTable, key: str, mapped: set[str], block_bytes: int) -> FilePlan:
    path, fmt = export_format(table, key)
    if fmt == "parquet":
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowInvalid, OSError) as exc:
            raise unreadable(key, path, "parquet", exc) from None
        names = meta.schema.to_arrow_schema().names
        check_unique(names, mapped, key, path)
        groups, blocks, rows = list(range(meta.num_row_groups)), [], 0
        start = 0
        for g in groups:
            rows += meta.row_group(g).num_rows
            if rows >= block_bytes // ROW_BYTES:
                blocks.append((start, g + 1))
                start, rows = g + 1, 0
        if start < len(groups) or not blocks:
            blocks.append((start, len(groups)))
        return FilePlan(name, key, path, "parquet", tuple(names), None, "", "", tuple(blocks), meta.num_rows)
    with path.open("rb") as fh:
        head = fh.read(65_536)
    encoding = table.encoding
    # Read whole, header and all: an encoding whose bytes cannot be cut, or lines ended by CR alone.
    whole = (encoding is not None and not _splittable(encoding)) or (b"\r" in head and b"\n" not in head)
    first = 0 if whole else _header_end(path)
    if encoding is None:
        if whole:
            header = head.splitlines()[0] if head else b""
        else:
            with path.open("rb") as fh:
                header = fh.read(first)
        try:
            header.decode("utf-8")
            header_encoding = "utf-8-sig" if header.startswith(codecs.BOM_UTF8) else "utf-8"
        except UnicodeDecodeError:
            header_encoding = "cells"
    else:
        header_encoding = encoding
    delimiter = table.delimiter or guess_delimiter(head)
    try:
        # Read cell by cell: the header is UTF-8 or not whatever the rest of the file is.
        names = header_names(path, encoding or "cells", delimiter, key, mapped)
    except (UnicodeError, OSError, csv.Error) as exc:
        raise unreadable(key, path, "csv", exc) from None
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(first)
        sample = fh.read(1 << 20)
    rows_guess = (size - first) * max(sample.count(b"\n"), 1) // max(len(sample), 1)
    if whole:
        return FilePlan(name, key, path, "csv", tuple(names), encoding, header_encoding, delimiter, ((0, -1),),
                        rows_guess)
    ranges = _csv_ranges(client, path, first, block_bytes)
    return FilePlan(name, key, path, "csv", tuple(names), encoding, header_encoding, delimiter, tuple(ranges),
                    rows_guess)


def _splittable(encoding: str) -> bool:
    return codecs.lookup(encoding).name in SPLITTABLE


# --- 2. rows of one block ------------------------------------------------------------------------------

def _read_block(plan: FilePlan, i: int) -> tuple[pa.Table, list[tuple[str, str]], bool, int, tuple[bool, bool]]:
    """The block's rows as read, its malformed lines, whether it was read cell by cell, how many cells were not
    UTF-8, and whether its first and its last line were malformed."""
    if plan.format == "parquet":
        a, b = plan.blocks[i]
        try:
            raw = pq.ParquetFile(plan.path).read_row_groups(list(range(a, b)))
        except (pa.ArrowInvalid, OSError) as exc:
            raise unreadable(plan.key, plan.path, "parquet", exc) from None
        return raw, [], False, 0, (False, False)
    start, end = plan.blocks[i]
    if end < 0:  # the whole file: its bytes cannot be cut, or a cut fell inside a row
        encoding = plan.encoding or plan.header_encoding
        if plan.encoding is None and encoding != "cells" and first_invalid_utf8(plan.path) is not None:
            encoding = "cells"
        try:
            raw, malformed, fixed = parse_csv(plan.path, list(plan.names), encoding, plan.delimiter, skip_rows=1)
        except (pa.ArrowInvalid, UnicodeError) as exc:
            raise unreadable(plan.key, plan.path, "csv", exc) from None
        return raw, malformed, encoding == "cells", fixed, (False, False)
    if start == end:  # a header and nothing else
        return pa.table({n: pa.array([], pa.string()) for n in plan.names}), [], False, 0, (False, False)
    with plan.path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    encoding = plan.encoding
    if encoding is None:
        try:
            data.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cells"
    lines: list[int] = []
    try:
        raw, malformed, fixed = parse_csv(io.BytesIO(data), list(plan.names), encoding, plan.delimiter, lines=lines)
    except (pa.ArrowInvalid, UnicodeError) as exc:
        raise unreadable(plan.key, plan.path, "csv", exc) from None
    return raw, malformed, encoding == "cells", fixed, (1 in lines, raw.num_rows + len(malformed) in lines)


def _as_read(raw: pa.Table, rows: np.ndarray | None = None) -> dict[str, pa.Array]:
    picked = raw if rows is None else raw.take(pa.array(rows, pa.int64()))
    return {f"{RAW}{i}": cells.as_strings(c) for i, c in enumerate(picked.columns)}


def _check_block(plan: FilePlan, i: int, cfg: Config, now: datetime, partitions: int, work: Path) -> dict:
    """Parse and check block ``i`` of a file: its quarantine part, and the rows that pass as parts by partition."""
    raw, malformed, by_cell, fixed, edges = _read_block(plan, i)
    info = {"decimal": decimal_of(getattr(cfg.data, plan.name), plan.delimiter if plan.format == "csv" else None)}
    first = None
    if plan.name == "leads":
        checks, columns = lead_cells(cfg, now, raw, info)
    elif plan.name == "outcomes":
        checks, columns, first, late = outcome_cells(cfg, now, raw, info)
        # Checked after those against the lead, in the partition: carried as the reason it would give.
        rows, reasons = late.texts()
        columns[LATE] = pa.nulls(raw.num_rows, pa.string()) if not len(rows) else \
            pc.take(reasons, pc.index_in(pa.array(np.arange(raw.num_rows)), value_set=pa.array(rows)))
    else:
        checks, columns = activity_cells(cfg, now, raw, info)
    rows, reasons = checks.texts()
    if len(rows):  # every task's files written whole: Dask runs a task again when its worker is lost
        bad = pa.table({BLOCK: pa.array(np.full(len(rows), i), pa.int32()), ROW: pa.array(rows, pa.int64()),
                        "reason": reasons, **_as_read(raw, rows)})
        write_parquet_atomic(bad, work / "quarantine" / plan.name / f"block-{i:06d}.parquet")
    keep = np.flatnonzero(checks.passing)
    passing = pa.table({**{k: v.take(pa.array(keep, pa.int64())) for k, v in columns.items()},
                        BLOCK: pa.array(np.full(len(keep), i), pa.int32()), ROW: pa.array(keep, pa.int64()),
                        **_as_read(raw, keep)})
    _write_partitioned(passing, partitions, work / "rows" / plan.name, f"block-{i:06d}.parquet")
    return {"rows": raw.num_rows, "malformed": malformed, "by_cell": by_cell, "fixed": fixed, "edges": edges,
            "spellings": first, "schema": pa.table(columns).schema}


def _cut_inside_a_row(blocks: list[dict]) -> bool:
    """Whether a cut between blocks may have fallen inside a quoted cell: quotes inside unquoted cells (5" screen)
    turn the quote count around, so a line break inside a later quoted cell can look like a line's end. A row cut
    in two leaves a malformed line on one side of the cut at least (a file of one column aside), so: a malformed
    first line after a cut, or a malformed last line before one."""
    return any((i > 0 and b["edges"][0]) or (i < len(blocks) - 1 and b["edges"][1]) for i, b in enumerate(blocks))


def partition_of(lead_id: pa.Array, partitions: int) -> np.ndarray:
    """Each lead id's partition (:func:`leadscore.cluster.partition_sql`)."""
    con = duckdb.connect()
    try:
        con.register("ids", pa.table({"lead_id": lead_id}))
        return con.sql(f"SELECT {partition_sql(partitions)} FROM ids").to_arrow_table().column(0) \
            .to_numpy(zero_copy_only=False)
    finally:
        con.close()


def _write_partitioned(rows: pa.Table, partitions: int, folder: Path, name: str) -> None:
    if not rows.num_rows:
        return
    part = partition_of(rows["lead_id"], partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    for p in np.flatnonzero(np.diff(bounds)):
        write_parquet_atomic(rows.take(pa.array(order[bounds[p]:bounds[p + 1]])), folder / f"part={p}" / name)


# --- 3. checks between rows, partition by partition --------------------------------------------------------

def _read_parts(folder: Path) -> pa.Table | None:
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return table.sort_by([(BLOCK, "ascending"), (ROW, "ascending")])


def _split(rows: pa.Table, checks: Checks, name: str, p: int, work: Path) -> pa.Table:
    """Write the rows that fail ``checks`` to the partition's quarantine part; return the others."""
    bad, reasons = checks.texts()
    if len(bad):
        q = rows.take(pa.array(bad, pa.int64()))
        write_parquet_atomic(pa.table({BLOCK: q[BLOCK], ROW: q[ROW], "reason": reasons,
                                       **{c: q[c] for c in q.column_names if c.startswith(RAW)}}),
                             work / "quarantine" / name / f"part-{p:06d}.parquet")
    return rows.filter(pa.array(checks.passing))


def _relate_partition(p: int, cfg: Config, work: Path, renamed: dict[str, str], schemas: dict[str, pa.Schema],
                      canonical: dict[str, pa.Schema]) -> dict:
    """Partition ``p``'s checks between rows, and its part of each canonical table (its rows in file order) as
    ``work/tables/<table>.parquet/part-<p>.parquet``."""
    out: dict = {"kept": {}, "latest": None, "dated": {}}
    kept: dict[str, list[pa.Table]] = {name: [] for name in canonical}

    def keep(name: str, rows: pa.Table) -> None:
        out["kept"][name] = out["kept"].get(name, 0) + rows.num_rows
        kept[name].append(rows.select(canonical[name].names).cast(canonical[name]))
        col = "created_at" if name == "leads" else "occurred_at"
        latest = pc.max(rows[col]).as_py() if rows.num_rows else None
        if latest is not None and (out["latest"] is None or latest > out["latest"]):
            out["latest"] = latest

    leads = _read_parts(work / "rows" / "leads" / f"part={p}")
    if leads is None:
        kept_leads = schemas["leads"].empty_table()
    else:
        checks = Checks(leads.num_rows)
        checks.add(later_duplicates(leads["lead_id"].combine_chunks(), checks.passing), DUPLICATE_LEAD)
        kept_leads = _split(leads, checks, "leads", p, work)
    dated = []
    for i, role in enumerate(("won_at", "lost_at")):
        if f"outcome:{role}" in kept_leads.column_names:
            at = kept_leads[f"outcome:{role}"]
            has = kept_leads.filter(at.is_valid())
            column = getattr(cfg.data.leads, role)
            out["dated"][column] = has.num_rows
            dated.append(dated_changes(has["lead_id"], column, has[f"outcome:{role}"]))
    keep("leads", kept_leads)
    known = kept_leads.select(["lead_id", "created_at"]).combine_chunks()
    for name in ("outcomes", "activities"):
        rows = _read_parts(work / "rows" / name / f"part={p}")
        if rows is not None:
            columns = {c: rows[c].combine_chunks() for c in ("lead_id", "occurred_at", "stage")
                       if c in rows.column_names}
            checks = Checks(rows.num_rows)
            if name == "outcomes":
                rows = rows.set_column(rows.column_names.index("stage"), "stage",
                                       one_spelling(columns["stage"], renamed))
                outcome_relations(cfg, checks, columns, known)
                late = rows[LATE].combine_chunks()
                checks.add(late.is_valid().to_numpy(zero_copy_only=False),
                           lambda bad: late.take(pa.array(bad, pa.int64())).to_pylist())
            else:
                activity_relations(checks, columns, known)
            keep(name, _split(rows, checks, name, p, work))
    for d in dated:  # after the outcomes file's rows, as the one-machine ingest adds them
        keep("outcomes", d)
    for name, schema in canonical.items():
        table = pa.concat_tables(kept[name]) if kept[name] else schema.empty_table()
        write_parquet_atomic(table, work / "tables" / f"{name}.parquet" / part_name(p))
    return out


# --- 4. tables and quarantine ----------------------------------------------------------------------------

def _quarantined(plan: FilePlan, work: Path, offsets: np.ndarray, malformed: list) -> Quarantined | None:
    """The blocks' quarantined rows in file order, and the lines that could not be split, as the one-machine
    ingest records them."""
    lines = malformed_table(malformed)
    files = sorted((work / "quarantine" / plan.name).glob("*.parquet"))
    if not files:
        empty = pa.table({n: pa.array([], pa.string()) for n in plan.names})
        return Quarantined(empty, np.zeros(0, np.int64), pa.array([], pa.string()), lines) if lines else None
    q = pa.concat_tables([pq.read_table(f) for f in files])
    source_row = offsets[q[BLOCK].to_numpy()] + q[ROW].to_numpy() + 1
    order = pa.array(np.argsort(source_row, kind="stable"))
    raw = pa.table([q[f"{RAW}{i}"].take(order) for i in range(len(plan.names))], names=list(plan.names))
    return Quarantined(raw, source_row[order.to_numpy()], q["reason"].take(order).combine_chunks(), lines)


def ingest_on_cluster(client, cfg: Config, work: Path, now: datetime | None = None, block_bytes: int = BLOCK_BYTES,
                      partitions: int = 0) -> tuple[IngestResult, Path]:
    """Read, check and canonicalize the export on the cluster. Writes the canonical tables to ``work/tables``
    (moved into place by :func:`commit_tables` once the run accepts them). Returns the accounting and the
    quarantined rows as the one-machine ingest gives them (tables: the campaigns only; ``write_quarantine``
    writes the files), and the tables' folder."""
    now = now or datetime.now(timezone.utc)
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("rows", "quarantine", "tables"):
        for name in TABLES:
            (work / sub / (f"{name}.parquet" if sub == "tables" else name)).mkdir(parents=True)
    specs = [("leads", cfg.data.leads, "data.leads", lead_mapping(cfg))]
    if cfg.data.outcomes is not None:
        specs.append(("outcomes", cfg.data.outcomes, "data.outcomes", outcome_mapping(cfg)))
    if cfg.data.activities is not None:
        specs.append(("activities", cfg.data.activities, "data.activities", activity_mapping(cfg)))
    plans = {}
    for name, table, key, mapping in specs:
        plan = plan_file(client, name, table, key, set(mapping.values()), block_bytes)
        require_columns(pa.table({n: pa.array([], pa.string()) for n in plan.names}), mapping, key)
        plans[name] = plan
    if not partitions:  # the features' partitions, so that they need no split of their own
        size = sum(p.path.stat().st_size * (3 if p.format == "parquet" else 1) for p in plans.values())
        partitions = partition_count(cfg.engine.partitions, plans["leads"].rows_guess, total_threads(client), size)
    log.info("ingest: checking %s in %d blocks on the cluster, into %d lead partitions",
             ", ".join(p.path.name for p in plans.values()), sum(len(p.blocks) for p in plans.values()), partitions)
    futures = {name: [client.submit(_check_block, plan, i, cfg, now, partitions, work, pure=False)
                      for i in range(len(plan.blocks))] for name, plan in plans.items()}
    checked = {name: gather_all(client, f) for name, f in futures.items()}
    del futures  # released: a worker lost later does not make Dask check these blocks again
    for name, plan in plans.items():
        if _cut_inside_a_row(checked[name]):
            log.warning("%s: %s has quotes inside unquoted cells as well as line breaks inside quoted ones, so "
                        "where its rows end is for the parser to say: read as one block", plan.key, plan.path.name)
            for sub in ("rows", "quarantine"):
                shutil.rmtree(work / sub / name)
                (work / sub / name).mkdir()
            plans[name] = replace(plan, blocks=((0, -1),))
            checked[name] = [client.submit(_check_block, plans[name], 0, cfg, now, partitions, work,
                                           pure=False).result()]
    log.info("ingest: %s rows read; checking them against each other, partition by partition",
             f"{sum(b['rows'] for blocks in checked.values() for b in blocks):,}")

    result = IngestResult(tables={})
    schemas = {name: _schema(parts) for name, parts in checked.items()}
    renamed = {}
    if "outcomes" in checked:
        first = [c["spellings"] for c in checked["outcomes"] if c["spellings"] is not None]
        renamed = spelling_map(pa.concat_tables(first) if first else pa.table(
            {"stage": pa.array([], pa.string()), "at_min": pa.array([], pa.int64())}), configured_stages(cfg))
    canonical = _canonical_schemas(schemas)
    related = gather_all(client, [client.submit(_relate_partition, p, cfg, work, renamed, schemas, canonical,
                                                pure=False) for p in range(partitions)])

    for name, plan in plans.items():
        blocks = checked[name]
        rows = np.array([b["rows"] for b in blocks], np.int64)
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]) if len(rows) else np.zeros(0, np.int64)
        malformed = [line for b in blocks for line in b["malformed"]]
        q = _quarantined(plan, work, offsets, malformed)
        bad = 0 if q is None else len(q.rows)
        if q is not None:
            result.quarantined[name] = q
        kept = sum(r["kept"].get(name, 0) for r in related)
        if name == "outcomes":
            kept -= sum(sum(r["dated"].values()) for r in related)
        rows_in = int(rows.sum()) + len(malformed)
        result.counts[name] = {"rows_in": rows_in, "kept": kept, "quarantined": bad + len(malformed)}
        if kept + bad + len(malformed) != rows_in:  # a bug, not a user error: keep the traceback
            raise AssertionError(f"{name}: {rows_in} rows in, {kept} kept + {bad + len(malformed)} quarantined")
        result.files[name] = _file_info(plan, blocks, cfg, malformed, renamed if name == "outcomes" else {})
    dated = {}
    for r in related:
        for col, n in r["dated"].items():
            dated[col] = dated.get(col, 0) + n
    if dated:
        result.files["leads"]["outcomes_from_columns"] = dated
    read_campaigns(cfg, now, result)
    result.lead_ids_from = work / "tables" / "leads.parquet"
    latest = [r["latest"] for r in related if r["latest"] is not None]
    if result.counts["leads"]["kept"]:
        result.as_of = cfg.data.as_of or (max(latest) if latest else None) or now.replace(microsecond=0)
    return result, work / "tables"


def _schema(blocks: list[dict]) -> pa.Schema:
    schema = blocks[0]["schema"]
    return pa.schema([*schema, pa.field(BLOCK, pa.int32()), pa.field(ROW, pa.int64())])


def _canonical_schemas(schemas: dict[str, pa.Schema]) -> dict[str, pa.Schema]:
    """The schema of each canonical table the one-machine ingest writes (unmapped event files: empty tables)."""
    leads = pa.schema([f for f in schemas["leads"] if not f.name.startswith(("outcome:", "leadscore:"))])
    return {"leads": leads, "outcomes": OUTCOMES, "activities": ACTIVITIES}


def _file_info(plan: FilePlan, blocks: list[dict], cfg: Config, malformed: list, renamed: dict[str, str]) -> dict:
    """How the file was read, as the one-machine ingest says it (and in how many blocks)."""
    if plan.format == "parquet":
        info = {"format": "parquet"}
    else:
        by_cell = plan.header_encoding == "cells" or any(b["by_cell"] for b in blocks)
        encoding = plan.encoding or (cells_encoding(plan.key, plan.path, sum(b["fixed"] for b in blocks)) if by_cell
                                     else plan.header_encoding)
        info = {"format": "csv", "encoding": encoding, "delimiter": plan.delimiter,
                "decimal": decimal_of(getattr(cfg.data, plan.name), plan.delimiter)}
    log_spellings(renamed, info)
    if malformed:
        warn_malformed(plan.key, plan.path, len(malformed), len(plan.names))
        info["malformed_lines"] = len(malformed)
    info["blocks"] = len(plan.blocks)
    return info


def commit_tables(work: Path, canonical: Path) -> None:
    """Put the canonical tables a cluster ingest wrote (``work/tables``) in place, each by renames, and drop the
    ingest's parts."""
    canonical.mkdir(parents=True, exist_ok=True)
    for path in sorted((work / "tables").iterdir()):
        replace_table(path, canonical / path.name)
    shutil.rmtree(work, ignore_errors=True)
