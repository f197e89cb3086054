"""The score ledger: every published score, appended, never rewritten.

Layout: ``home/ledger/scored_date=YYYY-MM-DD/<run_id>.parquet`` (hive partitions, one file per run), so
a day's routing and a lead's history are a filtered read, and old days can be archived by folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

COLUMNS = ["lead_id", "probability", "score", "tier", "route", "reasons", "model_version", "scored_at", "run_id",
           "input_hash"]


def append(ledger: Path, run_id: str, scores: pd.DataFrame) -> Path:
    """Write this run's rows as one new file (temp name, then rename: readers never see half a file)."""
    day = pd.Timestamp(scores["scored_at"].iloc[0]).strftime("%Y-%m-%d") if len(scores) else "empty"
    folder = ledger / f"scored_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(scores.assign(run_id=run_id)[COLUMNS], preserve_index=False)
    final = folder / f"{run_id}.parquet"
    tmp = folder / f".{run_id}.{secrets.token_hex(4)}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def _dataset(ledger: Path) -> ds.Dataset | None:
    if not ledger.is_dir() or not any(ledger.glob("scored_date=*/*.parquet")):
        return None
    return ds.dataset(ledger, format="parquet", partitioning="hive", exclude_invalid_files=True)


def read(ledger: Path, where=None, columns: list[str] | None = None) -> pd.DataFrame:
    data = _dataset(ledger)
    if data is None:
        return pd.DataFrame(columns=columns or COLUMNS)
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
