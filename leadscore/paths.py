"""Where everything lives under ``home``. Only this module knows the layout."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from leadscore.errors import ConfigError

TEMP_SUFFIXES = (".tmp", ".partial")  # names of things being written: `.<name>.<random>.tmp`, `.<run>.partial`


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
    def landmarks_file(self) -> Path:
        return self.data / "landmarks.parquet"

    @property
    def partitions(self) -> Path:
        """The canonical tables split by lead, and their shared counts, for a run on a Dask cluster."""
        return self.data / "partitions"

    @property
    def ingest_blocks(self) -> Path:
        """A cluster ingest's parts (rows by partition, quarantine parts), removed once its tables are in place."""
        return self.data / "ingest_blocks"

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

    @property
    def spill(self) -> Path:
        """Where duckdb may spill while building features."""
        return self.root / "tmp" / "duckdb"

    def ensure(self) -> Home:
        """Create the folders; a home that is a file or cannot be written is a config mistake, said in one line."""
        path = self.root
        try:
            for path in (self.root, self.data, self.canonical, self.artifacts, self.prefect, self.published):
                path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"home: {path} is a file, not a folder; point home (or --home) at a folder") from None
        except OSError as exc:
            raise ConfigError(f"home: cannot create {path}: {exc.strerror}; point home (or --home) at a folder "
                              "you can write") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigError(f"home: {self.root} is not writable; point home (or --home) at a folder you can write")
        return self

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove what a killed run left half-written: temporary files and unfinished run folders, a cluster
        ingest's parts, and duckdb's spill files. Called under the home's lock, when no other run can be writing
        them."""
        removed = []
        for folder in (self.data, self.published, self.root / "serving", self.ledger, self.quarantine, self.runs):
            if not folder.is_dir():
                continue
            for path in folder.rglob(".*"):
                if path.name.endswith(TEMP_SUFFIXES):
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                    removed.append(path)
        if self.ingest_blocks.is_dir():  # a cluster ingest that stopped before its tables were in place
            shutil.rmtree(self.ingest_blocks, ignore_errors=True)
            removed.append(self.ingest_blocks)
        if self.spill.is_dir():
            for path in self.spill.iterdir():
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        return removed


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


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """The one way leadscore writes a file: the caller writes the temporary path this yields, beside the target;
    on success it replaces the target in one rename (readers see the old file or the new one, never half of
    one), on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise with_filename(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def fresh_folder(path: Path) -> Iterator[Path]:
    """A folder written whole, for a task Dask may run again (its worker lost): the caller fills the temporary
    folder this yields, beside the target, which then takes the target's place (:func:`replace_table`: one
    written by an earlier run of the task is moved aside and removed). A run killed half-way leaves only its
    temporary folder, which the home's clean-up of stale temporaries removes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_table(tmp, path)


def part_name(partition: int) -> str:
    """The file of one lead partition in a table written by partition (:func:`table_parts`)."""
    return f"part-{partition:05d}.parquet"


def table_parts(path: Path) -> list[Path]:
    """A canonical table written by a cluster ingest is a folder of one file per lead partition, the partition by
    a hash of the lead id (``part-00000.parquet``, ...); the one-machine ingest writes one file (no parts). Either
    reads the same with pyarrow (``pq.read_table``, ``ds.dataset``)."""
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else []


def replace_table(new: Path, path: Path) -> None:
    """Put a table (a file or a folder of parts) at ``path`` in place of what was there, by renames."""
    aside = path.with_name(f".{path.name}.old")
    _remove(aside)  # left by a run stopped between the renames: a file or a folder
    if path.exists():
        os.replace(path, aside)
    os.replace(new, path)
    _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def with_filename(exc: OSError, path: Path) -> OSError:
    """The same error, naming ``path`` if it named no file (pyarrow's and duckdb's write errors do not)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, os.strerror(exc.errno), str(path))


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_parquet_atomic(table, path: Path, **options) -> None:
    """An Arrow table written whole (:func:`atomic_write`); ``options`` go to ``pyarrow.parquet.write_table``."""
    import pyarrow.parquet as pq

    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, **options)


def default_spill_dir() -> Path:
    """Where duckdb may spill when no home is given: never the working directory (its default, `.tmp`)."""
    import tempfile

    return Path(tempfile.gettempdir()) / "leadscore-duckdb"


@contextmanager
def one_run_at_a_time(home: Home) -> Iterator[None]:
    """Hold ``home/.lock`` for a whole pipeline run: scheduled runs that meet (score and report at 06:00) or a
    hand-started run during a scheduled one would otherwise rewrite the same canonical tables. The operating
    system drops the lock if the process dies; whoever takes it next removes what that process left
    half-written (no other run can be writing it then)."""
    import fcntl

    home.root.mkdir(parents=True, exist_ok=True)
    with (home.root / ".lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger("leadscore").info("waiting for another leadscore run in %s to finish", home.root)
            fcntl.flock(fh, fcntl.LOCK_EX)
        stale = home.remove_stale_temporaries()
        if stale:
            logging.getLogger("leadscore").info("removed %d temporary files an interrupted run left in %s",
                                                len(stale), home.root)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
