"""Where everything lives under ``home``. Only this module knows the layout."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def canonical(self) -> Path:
        return self.data / "canonical"

    @property
    def features_file(self) -> Path:
        return self.data / "features.parquet"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    @property
    def published(self) -> Path:
        return self.root / "published"

    @property
    def scores(self) -> Path:
        return self.published / "scores"

    @property
    def campaign_reports(self) -> Path:
        return self.published / "reports" / "campaign_quality"

    @property
    def snapshot(self) -> Path:
        """History aggregates for the real-time API, saved by each scoring run."""
        return self.root / "serving" / "snapshot"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def ensure(self) -> Home:
        for path in (self.root, self.data, self.canonical, self.artifacts, self.prefect, self.published):
            path.mkdir(parents=True, exist_ok=True)
        return self


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: UTC time to the second plus a short random suffix."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def read_latest(folder: Path) -> Path | None:
    """The run directory that ``folder/LATEST`` names, or None."""
    pointer = folder / "LATEST"
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    return folder / name if name else None


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename, so readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def default_spill_dir() -> Path:
    """Where duckdb may spill when no home is given: never the working directory (its default, `.tmp`)."""
    import tempfile

    return Path(tempfile.gettempdir()) / "leadscore-duckdb"


@contextmanager
def one_run_at_a_time(home: Home) -> Iterator[None]:
    """Hold ``home/.lock`` for a whole pipeline run: scheduled runs that meet (score and report at 06:00) or a
    hand-started run during a scheduled one would otherwise rewrite the same canonical tables. The operating
    system drops the lock if the process dies."""
    import fcntl

    home.root.mkdir(parents=True, exist_ok=True)
    with (home.root / ".lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger("leadscore").info("waiting for another leadscore run in %s to finish", home.root)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
