"""Atomic publishing: a run directory appears complete or not at all, and LATEST moves last.

Readers (sales ops, spreadsheets, the SQL loader) only ever follow ``LATEST``; a run directory is written
under a hidden temporary name and renamed into place once every file and the manifest are on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.paths import write_text_atomic

Writer = Callable[[Path], None]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish_run(root: Path, run_id: str, writers: dict[str, Writer], manifest: dict, keep_runs: int) -> Path:
    """Write ``root/<run_id>/`` with the given files plus ``manifest.json``, then point ``root/LATEST`` at it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / run_id
    tmp = root / f".{run_id}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files = {}
        for name, write in writers.items():
            write(tmp / name)
            files[name] = {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
        body = {**manifest, "run_id": run_id, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
        _fsync_dir(tmp)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(root / "LATEST", run_id + "\n")
    prune_runs(root, keep_runs)
    return final


def prune_runs(root: Path, keep_runs: int) -> list[str]:
    """Delete the oldest run directories beyond ``keep_runs``; never the one LATEST names."""
    latest = (root / "LATEST").read_text(encoding="utf-8").strip() if (root / "LATEST").exists() else None
    runs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for name in runs[: max(0, len(runs) - keep_runs)]:
        if name != latest:
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(name)
    return removed


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())


def frame_writers(frame: pd.DataFrame, stem: str, csv: bool = True, parquet: bool = True) -> dict[str, Writer]:
    """Writers for one frame as CSV (via Arrow, fast) and Parquet."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    writers: dict[str, Writer] = {}
    if csv:
        writers[f"{stem}.csv"] = lambda path: pacsv.write_csv(_csv_ready(table), path)
    if parquet:
        writers[f"{stem}.parquet"] = lambda path: pq.write_table(table, path)
    return writers


def _csv_ready(table: pa.Table) -> pa.Table:
    """ISO 8601 timestamps with a Z, which spreadsheets and pandas both read."""
    import pyarrow.compute as pc

    cols = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type):
            col = pc.strftime(col.cast(pa.timestamp("s", "UTC"), safe=False), format="%Y-%m-%dT%H:%M:%SZ")
        cols.append(col)
    return pa.table(cols, names=table.column_names)
