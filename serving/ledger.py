"""The score ledger: every published score, appended, never rewritten.

Layout: ``home/ledger/scored_date=YYYY-MM-DD/<run_id>.parquet`` (hive partitions, one file per run), so
a day's routing and a lead's history are a filtered read, and old days can be archived by folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from leadscore.paths import atomic_write

COLUMNS = ["lead_id", "probability", "fit", "score", "tier", "trend", "route", "reasons", "fit_reasons", "model_version",
           "scored_at", "run_id", "input_hash"]


ROW_GROUP = 65_536
PENDING = ".pending"  # a run's rows, written before its publication became LATEST


def append(ledger: Path, run_id: str, scores: pd.DataFrame, scored_at=None) -> Path:
    """Write this run's rows as one new file, pending (hidden: readers skip it) until :func:`commit`. The day
    folder is ``scored_at``'s (default: the first row's), so a run that rescored nobody has one too."""
    when = scored_at if scored_at is not None else (scores["scored_at"].iloc[0] if len(scores) else None)
    day = pd.Timestamp(when).strftime("%Y-%m-%d") if when is not None else "empty"
    table = pa.Table.from_pandas(scores.assign(run_id=run_id)[COLUMNS], preserve_index=False)
    # One text type in every file (carried rows may come back as large strings, empty columns as nulls).
    for i, field in enumerate(table.schema):
        if pa.types.is_large_string(field.type) or pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    pending = ledger / f"scored_date={day}" / f".{run_id}.parquet{PENDING}"
    # Sorted by lead, in row groups of 64k: a lead's history then reads one row group per run, found by the
    # groups' min/max statistics, instead of every row of every run.
    with atomic_write(pending) as tmp:
        pq.write_table(table.sort_by("lead_id"), tmp, row_group_size=ROW_GROUP)
    return pending


def commit(pending: Path) -> Path:
    final = pending.with_name(pending.name.removeprefix(".").removesuffix(PENDING))
    os.replace(pending, final)
    return final


def reconcile(ledger: Path, published_run: str | None) -> tuple[list[str], list[str]]:
    """After a kill: commit the pending rows of the run that LATEST names (it was published), drop the others
    (their run never became LATEST). Returns (committed, dropped) run ids."""
    committed, dropped = [], []
    if not ledger.is_dir():
        return committed, dropped
    for pending in sorted(ledger.glob(f"scored_date=*/.*.parquet{PENDING}")):
        run_id = pending.name.removeprefix(".").removesuffix(f".parquet{PENDING}")
        if run_id == published_run:
            commit(pending)
            committed.append(run_id)
        else:
            pending.unlink()
            dropped.append(run_id)
    return committed, dropped


def recorded_runs(ledger: Path) -> set[str]:
    """Every run the ledger holds rows of (pending ones included)."""
    if not ledger.is_dir():
        return set()
    return {p.name.removeprefix(".").removesuffix(PENDING).removesuffix(".parquet")
            for p in ledger.glob("scored_date=*/*") if p.name.endswith((".parquet", PENDING))}


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


def changed_since(seen: pd.DataFrame, frame: pd.DataFrame, model_version) -> pd.DataFrame:
    """Rows of ``frame`` whose inputs (``input_hash``) or model differ from their latest row in ``seen`` (lead_id,
    input_hash, model_version, scored_at: the last published run's ``inputs.parquet``, or the ledger's rows), or
    that have none. ``model_version``: the label of the model that would score each row now (one for all, or one
    per row when segments have their own)."""
    if seen.empty:
        return frame
    latest = seen.sort_values("scored_at").drop_duplicates("lead_id", keep="last").set_index("lead_id")
    before = latest.reindex(frame["lead_id"].to_numpy())
    same = ((before["input_hash"].to_numpy() == frame["input_hash"].to_numpy())
            & (before["model_version"].to_numpy() == model_version))
    return frame[~same]
