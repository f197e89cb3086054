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
import pyarrow.parquet as pq

from leadscore.cluster import again_if_lost, cut, map_parts, send_parts
from leadscore.config import ROWS_PER_PART
from leadscore.paths import part_name, read_latest, with_filename, write_text_atomic
from leadscore.spreadsheet import write_csv

Writer = Callable[[Path], None]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish_run(root: Path, run_id: str, writers: dict[str, Writer], manifest: dict, keep_runs: int,
                before_latest: Callable[[Path], None] | None = None) -> Path:
    """Write ``root/<run_id>/`` with the given files plus ``manifest.json``, then point ``root/LATEST`` at it.

    ``before_latest`` runs between the two (the score ledger is written there), so nothing a reader can see
    through LATEST is missing from the records kept beside it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / run_id
    tmp = root / f".{run_id}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files = {}
        for name, write in writers.items():
            try:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)  # "crm/salesforce_leads.csv"
                write(tmp / name)
            except OSError as exc:
                raise with_filename(exc, final / name) from exc
            # A dataset written in parts is a folder: each of its files is listed.
            written = [tmp / name] if not (tmp / name).is_dir() else sorted(
                p for p in (tmp / name).rglob("*") if p.is_file())
            for path in written:
                files[path.relative_to(tmp).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        body = {**manifest, "run_id": run_id, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
        _fsync_dir(tmp)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if before_latest is not None:
        before_latest(final)
    write_text_atomic(root / "LATEST", run_id + "\n")
    prune_runs(root, keep_runs)
    return final


def unpublished_runs(root: Path) -> list[str]:
    """Run folders a killed run left behind: completed after LATEST last moved, yet not the one it names, so no
    reader ever saw them. (Older folders are earlier runs; without LATEST nothing is judged.)"""
    pointer = root / "LATEST"
    if not pointer.is_file():
        return []
    latest, moved = pointer.read_text(encoding="utf-8").strip(), pointer.stat().st_mtime
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != latest
                  and (p / "manifest.json").is_file() and (p / "manifest.json").stat().st_mtime > moved)


def reconcile_scores(scores_root: Path, ledger_root: Path) -> dict[str, list[str]]:
    """Make the ledger and the published scores agree again after a run was killed mid-publication: pending
    ledger rows of the run LATEST names are kept, other pending rows dropped, and run folders that never
    became LATEST removed."""
    from serving import ledger

    latest = read_latest(scores_root)
    committed, dropped = ledger.reconcile(ledger_root, latest.name if latest else None)
    orphans = unpublished_runs(scores_root)
    for name in orphans:
        shutil.rmtree(scores_root / name, ignore_errors=True)
    return {"ledger_committed": committed, "ledger_dropped": dropped, "runs_removed": orphans}


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
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())


def frame_writers(frame: pd.DataFrame, stem: str, csv: bool = True, parquet: bool = True, client=None,
                  rows_per_part: int = ROWS_PER_PART) -> dict[str, Writer]:
    """Writers for one frame as CSV (spreadsheet-safe, see leadscore.spreadsheet) and Parquet (values as they are).
    With a Dask ``client`` and more than ``rows_per_part`` rows, the workers write it in parts of consecutive rows:
    the Parquet file becomes a dataset (a folder of parts, read as one table in row order), the CSV one file
    joined from the parts."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if client is not None and table.num_rows > rows_per_part:
        parts = _Parts(client, table, rows_per_part)
        return {**({f"{stem}.csv": parts.write_csv} if csv else {}),
                **({f"{stem}.parquet": parts.write_parquet} if parquet else {})}
    writers: dict[str, Writer] = {}
    if csv:
        writers[f"{stem}.csv"] = lambda path: write_csv(table, path)
    if parquet:
        writers[f"{stem}.parquet"] = lambda path: pq.write_table(table, path)
    return writers


class _Parts:
    """A table cut into runs of consecutive rows, written by the workers."""

    def __init__(self, client, table: pa.Table, rows_per_part: int):
        self.client, self.table, self.rows = client, table, rows_per_part
        self._pieces = None

    def _on_workers(self, what: str, write) -> None:
        """``write(pieces)`` with the parts on the workers: sent on first use, once for every file written from
        them, and sent again when a lost worker took some with it."""
        def attempt():
            if self._pieces is None:
                self._pieces = send_parts(self.client, cut(self.table, self.rows))
            try:
                write(self._pieces)
            except BaseException:
                self._pieces = None
                raise

        again_if_lost(self.client, what, attempt)

    def write_parquet(self, folder: Path) -> None:
        folder.mkdir()
        self._on_workers(f"writing {folder.name}", lambda pieces: map_parts(
            self.client, pq.write_table, pieces, [folder / part_name(i) for i in range(len(pieces))]))

    def write_csv(self, path: Path) -> None:
        """Each worker writes its rows (the first part with the header); the parts are then joined in order."""
        pieces = [path.with_name(f".{path.name}.part-{i:05d}") for i in range(len(cut(self.table, self.rows)))]
        try:
            self._on_workers(f"writing {path.name}", lambda parts: map_parts(
                self.client, write_csv, parts, pieces, [i == 0 for i in range(len(pieces))]))
            with path.open("wb") as out:
                for piece in pieces:
                    with piece.open("rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
        finally:
            for piece in pieces:
                piece.unlink(missing_ok=True)
                for stray in path.parent.glob(f".{piece.name}.*.tmp"):  # a part's writer killed half-way
                    stray.unlink(missing_ok=True)
