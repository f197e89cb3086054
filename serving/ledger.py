"""The score ledger: every published score, appended, never rewritten.

Layout: ``home/ledger/scored_date=YYYY-MM-DD/<run_id>.parquet`` (hive partitions, one file per run; a run on a
Dask cluster writes ``<run_id>.part-NNNNN.parquet``, each a run of lead ids), so a day's routing and a lead's
history are a filtered read, and old days can be archived by folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from leadscore.cluster import again_if_lost, cut, map_parts
from leadscore.config import ROWS_PER_PART
from leadscore.paths import write_parquet_atomic

COLUMNS = ["lead_id", "probability", "fit", "score", "tier", "trend", "route", "reasons", "fit_reasons", "model_version",
           "scored_at", "run_id", "input_hash"]


ROW_GROUP = 65_536
PENDING = ".pending"  # a run's rows, written before its publication became LATEST


def append(ledger: Path, run_id: str, scores: pd.DataFrame, scored_at=None, client=None,
           rows_per_part: int = ROWS_PER_PART) -> list[Path]:
    """Write this run's rows as new files, pending (hidden: readers skip them) until :func:`commit`. The day
    folder is ``scored_at``'s (default: the first row's), so a run that rescored nobody has one too. With a Dask
    ``client`` and more than ``rows_per_part`` rows, the workers write them in parts, each a run of lead ids."""
    when = scored_at if scored_at is not None else (scores["scored_at"].iloc[0] if len(scores) else None)
    day = pd.Timestamp(when).strftime("%Y-%m-%d") if when is not None else "empty"
    table = pa.Table.from_pandas(scores.assign(run_id=run_id)[COLUMNS], preserve_index=False)
    # One text type in every file (carried rows may come back as large strings, empty columns as nulls).
    for i, field in enumerate(table.schema):
        if pa.types.is_large_string(field.type) or pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    # Sorted by lead, in row groups of 64k: a lead's history then reads one row group per run, found by the
    # groups' min/max statistics, instead of every row of every run. Parts cut the sorted rows, so each part's
    # statistics bound its leads too.
    table = table.sort_by("lead_id")
    folder = ledger / f"scored_date={day}"
    if client is None or table.num_rows <= rows_per_part:
        pending = folder / f".{run_id}.parquet{PENDING}"
        _write_sorted(table, pending)
        return [pending]
    pieces = cut(table, rows_per_part)
    pending = [folder / f".{run_id}.part-{i:05d}.parquet{PENDING}" for i in range(len(pieces))]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        again_if_lost(client, "writing the ledger", lambda: map_parts(client, _write_sorted, pieces, pending))
    except BaseException:
        for path in pending:
            path.unlink(missing_ok=True)
        raise
    return pending


def _write_sorted(table: pa.Table, pending: Path) -> None:
    write_parquet_atomic(table, pending, row_group_size=ROW_GROUP)


def commit(pending: list[Path]) -> list[Path]:
    """Make a run's pending files visible."""
    finals = []
    for path in pending:
        final = path.with_name(path.name.removeprefix(".").removesuffix(PENDING))
        os.replace(path, final)
        finals.append(final)
    return finals


def _run_of(name: str) -> str:
    """The run id a ledger file holds rows of: ``[.]<run_id>[.part-NNNNN].parquet[.pending]``."""
    return re.sub(r"(\.part-\d+)?\.parquet$", "", name.removeprefix(".").removesuffix(PENDING))


def reconcile(ledger: Path, published_run: str | None) -> tuple[list[str], list[str]]:
    """After a kill: commit the pending rows of the run that LATEST names (it was published), drop the others
    (their run never became LATEST). Returns (committed, dropped) run ids."""
    committed, dropped = [], []
    if not ledger.is_dir():
        return committed, dropped
    for pending in sorted(ledger.glob(f"scored_date=*/.*.parquet{PENDING}")):
        run_id = _run_of(pending.name)
        if run_id == published_run:
            commit([pending])
            committed.append(run_id)
        else:
            pending.unlink()
            dropped.append(run_id)
    return list(dict.fromkeys(committed)), list(dict.fromkeys(dropped))


def recorded_runs(ledger: Path) -> set[str]:
    """Every run the ledger holds rows of (pending ones included)."""
    if not ledger.is_dir():
        return set()
    return {_run_of(p.name) for p in ledger.glob("scored_date=*/*") if p.name.endswith((".parquet", PENDING))}


def _dataset(ledger: Path) -> ds.Dataset | None:
    if not ledger.is_dir() or not any(ledger.glob("scored_date=*/*.parquet")):
        return None
    data = ds.dataset(ledger, format="parquet", partitioning="hive", exclude_invalid_files=True)
    # Files written before a column existed (fit, trend) read as nulls there, whichever file comes first.
    schema = pa.unify_schemas([f.physical_schema for f in data.get_fragments()] + [data.partitioning.schema],
                             promote_options="permissive")
    return ds.dataset(ledger, format="parquet", partitioning="hive", exclude_invalid_files=True, schema=schema)


def read(ledger: Path, where=None, columns: list[str] | None = None) -> pd.DataFrame:
    data = _dataset(ledger)
    if data is None:
        return pd.DataFrame(columns=columns or COLUMNS)
    if columns is not None:
        columns = [c for c in columns if c in data.schema.names]
    return data.to_table(filter=where, columns=columns).to_pandas()


def run_rows(ledger: Path, run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
    return read(ledger, ds.field("run_id") == run_id, columns)


def routed_on(ledger: Path, day: str) -> pd.DataFrame:
    """lead_id and route of every lead routed on ``day`` (UTC date), the latest route per lead."""
    rows = read(ledger, ds.field("scored_date") == day, ["lead_id", "route", "scored_at"])
    return rows.sort_values("scored_at").drop_duplicates("lead_id", keep="last")[["lead_id", "route"]]


def lead_history(ledger: Path, lead_id: str) -> pd.DataFrame:
    rows = read(ledger, ds.field("lead_id") == lead_id)
    return rows.sort_values(["scored_at", "run_id"]).reset_index(drop=True)


def latest_inputs(seen: pd.DataFrame) -> pd.DataFrame:
    """Each lead's latest row of ``seen`` (lead_id, input_hash, model_version, scored_at: the last published run's
    ``inputs.parquet``, or the ledger's rows), indexed by lead_id: what :func:`changed_since` compares with, made
    once for every part of the leads."""
    return seen.sort_values("scored_at").drop_duplicates("lead_id", keep="last").set_index("lead_id")


def changed_since(latest: pd.DataFrame, frame: pd.DataFrame, model_version) -> pd.DataFrame:
    """Rows of ``frame`` whose inputs (``input_hash``) or model differ from their row in ``latest``
    (:func:`latest_inputs`), or that have none. ``model_version``: the label of the model that would score each
    row now (one for all, or one per row when segments have their own)."""
    if latest.empty:
        return frame
    before = latest.reindex(frame["lead_id"].to_numpy())
    same = ((before["input_hash"].to_numpy() == frame["input_hash"].to_numpy())
            & (before["model_version"].to_numpy() == model_version))
    return frame[~same]
