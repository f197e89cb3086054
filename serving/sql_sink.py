"""Optional SQL sink: published scores upserted into one table keyed by lead_id, in one transaction.

Never drop-and-replace: readers of the table see the old rows or the new ones, and rows of leads that are no
longer scored (closed since) stay with their last score and ``scored_at``.
"""

from __future__ import annotations

import pandas as pd

from leadscore.errors import DataError

COLUMNS = {"lead_id": "text", "probability": "float", "score": "int", "tier": "text", "rank": "int",
           "reasons": "text", "route": "text", "model_version": "text", "scored_at": "time", "run_id": "text"}
CHUNK = 20_000


def _table(name: str, metadata):
    from sqlalchemy import Column, DateTime, Float, Integer, String, Table, Text

    kinds = {"text": Text, "float": Float, "int": Integer, "time": lambda: DateTime(timezone=True)}
    cols = [Column("lead_id", String(255), primary_key=True)]
    cols += [Column(c, kinds[k]()) for c, k in COLUMNS.items() if c != "lead_id"]
    return Table(name, metadata, *cols)


def _upsert_statement(dialect: str, table):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        stmt = insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in COLUMNS if c != "lead_id"})
    else:
        raise DataError(f"publish.sql_url: the {dialect} database has no upsert here; use sqlite, postgresql or mysql")
    stmt = insert(table)
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


def upsert_scores(url: str, table_name: str, scores: pd.DataFrame, run_id: str) -> int:
    """Insert new leads and update known ones; returns the rows written."""
    from sqlalchemy import MetaData, create_engine
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise DataError(f"publish.sql_url: cannot use {_shown(url)!r}: {exc}") from None
    table = _table(table_name, MetaData())
    frame = scores.assign(run_id=run_id)[list(COLUMNS)]
    frame = frame.astype({"probability": float, "score": int, "rank": int, "reasons": object})
    frame["reasons"] = frame["reasons"].where(frame["reasons"].notna(), None)  # NULL, not NaN
    frame["scored_at"] = pd.Series(frame["scored_at"].dt.to_pydatetime(), index=frame.index, dtype=object)
    records = frame.to_dict("records")
    try:
        with engine.begin() as conn:  # one transaction: all rows or none
            table.create(conn, checkfirst=True)
            stmt = _upsert_statement(engine.dialect.name, table)
            for start in range(0, len(records), CHUNK):
                conn.execute(stmt, records[start:start + CHUNK])
    except SQLAlchemyError as exc:
        raise DataError(f"publish.sql_url: writing table {table_name} failed, nothing was changed: "
                        f"{str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return len(records)
