"""Optional SQL sink: published scores upserted into one table keyed by lead_id, in one transaction.

Never drop-and-replace: readers of the table see the old rows or the new ones, and rows of leads that are no
longer scored (closed since) stay with their last score and ``scored_at``.
"""

from __future__ import annotations

import hashlib
import logging
import re

import pandas as pd

from leadscore.cluster import again_if_lost, cut, map_parts
from leadscore.config import ROWS_PER_PART
from leadscore.errors import DataError

log = logging.getLogger("leadscore")

COLUMNS = {"lead_id": "text", "probability": "float", "score": "int", "tier": "text", "rank": "int",
           "reasons": "text", "route": "text", "model_version": "text", "scored_at": "time", "run_id": "text"}
CHUNK = 20_000


def _table(name: str, metadata):
    from sqlalchemy import Column, DateTime, Float, Integer, String, Table, Text

    kinds = {"text": Text, "float": Float, "int": Integer, "time": lambda: DateTime(timezone=True)}
    cols = [Column("lead_id", String(255), primary_key=True)]
    cols += [Column(c, kinds[k]()) for c, k in COLUMNS.items() if c != "lead_id"]
    return Table(name, metadata, *cols)


def _upsert_statement(dialect: str, table, source=None):
    """Insert-or-update of ``table``'s rows by lead_id: of the rows given to execute, or of ``source`` (a select
    of the columns in order)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert
    else:
        raise DataError(f"publish.sql_url: the {dialect} database has no upsert here; use sqlite, postgresql or mysql")
    stmt = insert(table) if source is None else insert(table).from_select(list(COLUMNS), source)
    if dialect in ("mysql", "mariadb"):
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in COLUMNS if c != "lead_id"})
    return stmt.on_conflict_do_update(index_elements=["lead_id"],
                                      set_={c: stmt.excluded[c] for c in COLUMNS if c != "lead_id"})


def _shown(url: str) -> str:
    """The URL without its password, fit for a message or a log."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - the config checked it; never show a password however it fails
        return "(the configured URL)"


def check_connection(url: str) -> None:
    """Connect once before a run publishes anything, so an unreachable database stops it with nothing changed."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise DataError(f"publish.sql_url: cannot connect to {_shown(url)!r} ({str(exc).splitlines()[0]}); nothing "
                        "was published") from None
    engine.dispose()


def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        # SQLite lets one writer in at a time: the workers' parts wait their turn rather than fail.
        wait = {"connect_args": {"timeout": 600}} if make_url(url).get_backend_name() == "sqlite" else {}
        return create_engine(url, **wait)
    except (ArgumentError, ImportError) as exc:
        raise DataError(f"publish.sql_url: cannot use {_shown(url)!r}: {exc}") from None


def _records(scores: pd.DataFrame, run_id: str) -> list[dict]:
    frame = scores.assign(run_id=run_id)[list(COLUMNS)]
    frame = frame.astype({"probability": float, "score": int, "rank": int, "reasons": object})
    frame["reasons"] = frame["reasons"].where(frame["reasons"].notna(), None)  # NULL, not NaN
    frame["scored_at"] = pd.Series(frame["scored_at"].dt.to_pydatetime(), index=frame.index, dtype=object)
    return frame.to_dict("records")


def _execute(conn, stmt, records: list[dict]) -> None:
    """``stmt`` for every record, CHUNK records a call."""
    for start in range(0, len(records), CHUNK):
        conn.execute(stmt, records[start:start + CHUNK])


def _failed(table_name: str, exc) -> DataError:
    return DataError(f"publish.sql_url: writing table {table_name} failed, nothing was changed: "
                     f"{str(exc).splitlines()[0]}")


def upsert_scores(url: str, table_name: str, scores: pd.DataFrame, run_id: str, client=None,
                  rows_per_part: int = ROWS_PER_PART) -> int:
    """Insert new leads and update known ones, in one transaction; returns the rows written. With a Dask
    ``client`` and more than ``rows_per_part`` rows, the workers first load the rows in parts into a staging
    table of this run, and one transaction then upserts them from there: the table changes all at once."""
    from sqlalchemy import MetaData
    from sqlalchemy.exc import SQLAlchemyError

    if client is not None and len(scores) > rows_per_part:
        return _upsert_in_parts(client, url, table_name, scores, run_id, rows_per_part)
    engine = _engine(url)
    table = _table(table_name, MetaData())
    records = _records(scores, run_id)
    try:
        with engine.begin() as conn:  # one transaction: all rows or none
            table.create(conn, checkfirst=True)
            _execute(conn, _upsert_statement(engine.dialect.name, table), records)
    except SQLAlchemyError as exc:
        raise _failed(table_name, exc) from None
    finally:
        engine.dispose()
    return len(records)


def staging_name(table_name: str, load: str) -> str:
    """The table one load of a run's parts goes into before the upsert: the table's name (its first 40 characters,
    so the whole fits PostgreSQL's 63) and a hash naming the load (the run and the attempt)."""
    return f"{table_name[:40]}_staging_{hashlib.sha256(load.encode()).hexdigest()[:8]}"


def _is_staging(name: str, table_name: str) -> bool:
    return name != table_name and re.fullmatch(re.escape(table_name[:40]) + "_staging_[0-9a-f]{8}", name) is not None


def _load_part(scores: pd.DataFrame, url, staging: str, run_id: str) -> int:
    """On a worker: one part's rows into the staging table, in a transaction of its own. (``url``: a SQLAlchemy
    URL, whose repr in a failed task's log hides the password.)"""
    from sqlalchemy import MetaData

    engine = _engine(url)
    table = _table(staging, MetaData())
    records = _records(scores, run_id)
    try:
        with engine.begin() as conn:
            _execute(conn, table.insert(), records)
    finally:
        engine.dispose()
    return len(records)


def _upsert_in_parts(client, url: str, table_name: str, scores: pd.DataFrame, run_id: str, rows_per_part: int) -> int:
    from sqlalchemy import MetaData, Table, inspect, select, true
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    engine = _engine(url)
    made = []  # the staging tables this run created: one per attempt (a worker lost mid-load starts a new one)
    try:
        table = _table(table_name, MetaData())
        with engine.begin() as conn:
            # Staging tables of this table left by a run killed while loading (runs of one home take turns).
            for name in inspect(conn).get_table_names():
                if _is_staging(name, table_name):
                    Table(name, MetaData()).drop(conn)
                    log.warning("publish.sql_url: dropped %s, left by a run that was stopped while loading", name)

        def load():
            # A new table each attempt: a lost worker's part cannot land twice in the one the upsert reads.
            staging = _table(staging_name(table_name, f"{run_id}/{len(made)}"), MetaData())
            with engine.begin() as conn:
                staging.create(conn)
            made.append(staging)
            return staging, sum(map_parts(client, _load_part, cut(scores, rows_per_part), url=make_url(url),
                                          staging=staging.name, run_id=run_id))

        staging, loaded = again_if_lost(client, "loading the SQL staging table", load)
        with engine.begin() as conn:  # one transaction: all rows or none
            table.create(conn, checkfirst=True)
            # WHERE true: SQLite reads "SELECT ... ON CONFLICT" without a WHERE as a join's ON.
            source = select(*(staging.c[c] for c in COLUMNS)).where(true())
            conn.execute(_upsert_statement(engine.dialect.name, table, source))
    except SQLAlchemyError as exc:
        raise _failed(table_name, exc) from None
    finally:
        for staging in made:
            try:
                with engine.begin() as conn:
                    staging.drop(conn, checkfirst=True)
            except SQLAlchemyError:
                log.warning("publish.sql_url: could not drop the staging table %s; the next run drops it",
                            staging.name)
        engine.dispose()
    return loaded
