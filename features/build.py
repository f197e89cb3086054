"""Features and labels from canonical tables, as known when each lead arrived: the batch rendering of the feature
table (:mod:`features.definitions`) in duckdb SQL.

Pure: canonical tables and ``as_of`` in, a frame out. Nothing dated after ``as_of`` is visible, and every
history feature goes through :func:`features.pit.known_at` at the lead's own ``created_at``. The same code
serves training (mature leads) and the campaign report (every lead).

Labels. A lead is positive if it reached a won stage within ``horizon_days`` of ``created_at`` (and by
``as_of``). It is *mature* once ``created_at + horizon <= as_of``: only mature leads train and evaluate
models. A young lead that has not won is not a negative; it is immature and only scored.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import duckdb

from features.definitions import (
    ROLES,
    Calendar,
    Column,
    Count,
    DaysSince,
    Feature,
    SmoothedRate,
    feature_table,
    to_json,
)
from features.pit import known_at
from leadscore.config import Config
from leadscore.contract import METADATA_KEY, ROLE_COLUMNS, FeatureSet, export_column
from leadscore.duck import connect, days, ident, literal, scalar, utc_timestamps
from leadscore.errors import DataError
from leadscore.paths import atomic_write, default_spill_dir

log = logging.getLogger("leadscore")

CALENDAR_SQL = {"weekday": "isodow", "hour": "hour", "month": "month"}


def build_features(tables: dict, cfg: Config, as_of: datetime, out: Path | None = None,
                   extra_metadata: dict | None = None, spill_dir: Path | None = None) -> FeatureSet:
    """Features and labels of every lead known at ``as_of``.

    ``tables`` are Arrow tables or datasets (a dataset is scanned lazily, so large exports need not fit in
    memory twice). With ``out``, the frame is written to that Parquet file by duckdb and not returned, which
    keeps the peak memory of large runs bounded by ``features.memory_limit`` (duckdb spills to ``spill_dir``).
    """
    con = connect(cfg.data.timezone, spill_dir or default_spill_dir(), cfg.features.memory_limit)
    try:
        return _build(con, tables, cfg, as_of, out, extra_metadata)
    finally:
        con.close()


def _build(con: duckdb.DuckDBPyConnection, tables: dict, cfg: Config, as_of: datetime, out: Path | None,
           extra_metadata: dict | None) -> FeatureSet:
    lc, fc = cfg.data.leads, cfg.features
    for name, table in tables.items():
        con.register(f"raw_{name}", table)
    leads_columns = [r[0] for r in con.execute("DESCRIBE raw_leads").fetchall()]
    con.execute("CREATE TEMP TABLE cutoff AS SELECT CAST(? AS TIMESTAMPTZ) AS t", [as_of])

    # Leads known at as_of, narrow, with integer keys (joins and sorts on integers are several times faster).
    known = "created_at <= (SELECT t FROM cutoff)" if lc.created_at else "TRUE"
    ranks = ", ".join(f"CASE WHEN {r} IS NOT NULL THEN DENSE_RANK() OVER (ORDER BY {r}) END AS {r}_k" for r in ROLES)
    con.execute(
        f"""CREATE TEMP TABLE L AS
        SELECT (ROW_NUMBER() OVER (ORDER BY created_at, lead_id) - 1)::BIGINT AS qid, lead_id, created_at,
               {"outcome_label," if "outcome_label" in leads_columns else ""} {ranks}
        FROM raw_leads WHERE {known}"""
    )
    n_leads = scalar(con, "SELECT COUNT(*) FROM L")
    n_later = scalar(con, "SELECT COUNT(*) FROM raw_leads") - n_leads
    _outcomes(con, cfg)

    types = None
    if lc.created_at and "activities" in tables and scalar(con, "SELECT COUNT(*) FROM raw_activities") > 0:
        con.execute(
            """CREATE TEMP TABLE A AS
            SELECT L.qid AS k, a.type, a.occurred_at FROM raw_activities a JOIN L USING (lead_id)
            WHERE a.occurred_at <= (SELECT t FROM cutoff)"""
        )
        types = [r[0] for r in con.execute(
            "SELECT type FROM A GROUP BY type ORDER BY COUNT(*) DESC, type LIMIT ?", [fc.max_activity_types]
        ).fetchall()]
    table = feature_table(cfg, types)
    if not table:
        raise DataError("data.leads: no features to learn from; map at least one categorical or numeric column "
                        "(or a campaign, source or created_at)")
    selects, joins = _render(con, table, cfg)

    # The leads' own columns, keyed by qid, read once from the export.
    wanted = {*ROLE_COLUMNS, *(export_column(c) for c in (*lc.categorical, *lc.numeric, *lc.passthrough))}
    r_cols = ", ".join(f"r.{ident(c)}" for c in leads_columns if c in wanted and c != "lead_id")
    con.execute(f"CREATE TEMP TABLE R AS SELECT L.qid, L.lead_id, {r_cols} FROM L JOIN raw_leads r USING (lead_id)")

    meta = [*ROLE_COLUMNS, *[ident(export_column(c)) for c in lc.passthrough if export_column(c) in leads_columns]]
    query = f"""
        SELECT {', '.join('R.' + c for c in meta)},
               CASE WHEN LO.won_in_horizon THEN 1 WHEN LO.mature THEN 0 END::TINYINT AS label,
               LO.mature, LO.is_open, LO.won_at,
               {', '.join(selects)}
        FROM L JOIN LO USING (qid) JOIN R USING (qid) {' '.join(joins)}
        ORDER BY L.qid"""
    c = con.execute(
        "SELECT COUNT(*) FILTER (WHERE won_in_horizon), COUNT(*) FILTER (WHERE mature AND NOT won_in_horizon), "
        "COUNT(*) FILTER (WHERE NOT mature AND NOT won_in_horizon), COUNT(*) FILTER (WHERE is_open) FROM LO"
    ).fetchall()[0]
    counts = {"leads": int(n_leads), "leads_after_as_of": int(n_later), "positive": int(c[0]),
              "negative": int(c[1]), "immature": int(c[2]), "open": int(c[3])}
    fs = FeatureSet(frame=None, categorical=[f.name for f in table if f.kind == "categorical"],
                    numeric=[f.name for f in table if f.kind == "numeric"], labels={f.name: f.words for f in table},
                    counts=counts, mode="snapshot" if cfg.snapshot else "events", definitions=to_json(table))
    if out is None:
        fs.frame = utc_timestamps(con.sql(query).to_arrow_table())
        return fs
    # Large exports: duckdb writes the file itself, so the frame never sits in Python memory.
    meta_json = json.dumps(fs.metadata(extra_metadata))
    with atomic_write(out) as tmp:
        con.execute(f"COPY ({query}) TO {literal(str(tmp))} "
                    f"(FORMAT parquet, KV_METADATA {{{literal(METADATA_KEY)}: {literal(meta_json)}}})")
    return fs


def _outcomes(con: duckdb.DuckDBPyConnection, cfg: Config) -> None:
    """LO: each lead's outcome as known at as_of (won_at, mature, won_in_horizon, is_open)."""
    if cfg.snapshot:
        # The export's label column is the outcome: known where filled in; a positive lead is no longer open.
        con.execute(
            """CREATE TEMP TABLE LO AS
            SELECT qid, CAST(NULL AS TIMESTAMPTZ) AS won_at, outcome_label IS NOT NULL AS mature,
                   COALESCE(outcome_label = 1, FALSE) AS won_in_horizon,
                   COALESCE(outcome_label <> 1, TRUE) AS is_open
            FROM L"""
        )
        return
    horizon = int(cfg.label.horizon_days)
    won = ", ".join(literal(s) for s in cfg.label.won_stages)
    lost = ", ".join(literal(s) for s in cfg.label.lost_stages) or "NULL"
    # The first win and the first loss of each lead, as known at as_of.
    con.execute(
        f"""CREATE TEMP TABLE O AS
        SELECT lead_id,
               MIN(occurred_at) FILTER (WHERE stage IN ({won})) AS won_at,
               MIN(occurred_at) FILTER (WHERE stage IN ({lost})) AS lost_at
        FROM raw_outcomes WHERE occurred_at <= (SELECT t FROM cutoff) GROUP BY lead_id"""
    )
    con.execute(
        f"""CREATE TEMP TABLE LO AS
        SELECT qid, created_at, campaign_k, source_k, account_k, O.won_at,
               L.created_at + {days(horizon)} <= (SELECT t FROM cutoff) AS mature,
               O.won_at IS NOT NULL AND O.won_at < L.created_at + {days(horizon)} AS won_in_horizon,
               O.won_at IS NULL AND O.lost_at IS NULL AS is_open
        FROM L LEFT JOIN O USING (lead_id)"""
    )


def _render(con: duckdb.DuckDBPyConnection, table: list[Feature], cfg: Config) -> tuple[list[str], list[str]]:
    """One SQL expression per feature, over the point-in-time counts the table needs (one call of
    :func:`known_at` per stream and key)."""
    selects, joins = [], []
    activity = [f.source for f in table if isinstance(f.source, (Count, DaysSince)) and f.source.key == "lead"]
    levels: list[str] = []
    if activity:
        windows = tuple(sorted({s.window_days for s in activity if isinstance(s, Count) and s.window_days}))
        levels = list(dict.fromkeys(s.level for s in activity if isinstance(s, Count) and s.level is not None))
        con.execute("CREATE TEMP VIEW Q_self AS SELECT qid, qid AS k, created_at AS at FROM L")
        # One pass over the activities: each lead's own events, counted in total and per type.
        counted = known_at(con, "Q_self", "A", ["k"], windows, last=any(isinstance(s, DaysSince) for s in activity),
                           few_per_key=True, by="type", levels=levels)
        joins.append(f"LEFT JOIN {counted} USING (qid)")
    rates = {f.source.key: f.source.strength for f in table if isinstance(f.source, SmoothedRate)}
    if rates:
        _overall_rate(con, cfg)
    for role in dict.fromkeys(f.source.key for f in table if isinstance(f.source, (Count, SmoothedRate))
                              and f.source.key in ROLES):
        _history(con, cfg, role, rates.get(role))
        joins.append(f"LEFT JOIN hist_{role} USING (qid)")
    for f in table:
        s = f.source
        if isinstance(s, Column):
            expr = f"R.{ident(s.column)}"
        elif isinstance(s, Calendar):
            expr = f"DATE_PART('{CALENDAR_SQL[s.part]}', L.created_at)::DOUBLE"
        elif isinstance(s, Count) and s.key == "lead":
            suffix = "" if s.level is None else f"_{levels.index(s.level)}"
            expr = f"{counted}.n_{s.window_days}d{suffix}::DOUBLE"
        elif isinstance(s, DaysSince):
            expr = f"DATE_DIFF('second', {counted}.last_at, L.created_at) / 86400.0"
        elif isinstance(s, Count):
            expr = f"hist_{s.key}.n_{s.stream}::DOUBLE"
        else:
            expr = f"hist_{s.key}.rate"
        selects.append(f"{expr} AS {f.name}")
    return selects, joins


def _overall_rate(con, cfg: Config) -> None:
    """prior: the overall matured win rate known at each lead's created_at (what a key with no history is
    pulled toward)."""
    horizon = int(cfg.label.horizon_days)
    con.execute("CREATE TEMP VIEW Q_all AS SELECT qid, 1 AS g, created_at AS at FROM L")
    con.execute(f"CREATE TEMP VIEW E_mature_all AS SELECT 1 AS g, created_at + {days(horizon)} AS occurred_at FROM LO")
    con.execute(f"CREATE TEMP VIEW E_mwins_all AS SELECT 1 AS g, created_at + {days(horizon)} AS occurred_at FROM LO WHERE won_in_horizon")
    den = known_at(con, "Q_all", "E_mature_all", ["g"])
    num = known_at(con, "Q_all", "E_mwins_all", ["g"])
    con.execute(f"""CREATE TEMP TABLE prior AS SELECT qid, CASE WHEN d.n_all > 0 THEN n.n_all / d.n_all END AS p
                    FROM {den} d JOIN {num} n USING (qid)""")


def _history(con, cfg: Config, role: str, strength: float | None) -> None:
    """hist_<role>: the earlier leads and wins of each lead's campaign, source or account as known at its
    created_at, and (with a ``strength``) its smoothed win rate."""
    horizon = int(cfg.label.horizon_days)
    k = f"{role}_k"
    con.execute(f"CREATE OR REPLACE TEMP VIEW Q_{role} AS SELECT qid, {k}, created_at AS at FROM L")
    con.execute(f"CREATE OR REPLACE TEMP VIEW E_leads_{role} AS SELECT {k}, created_at AS occurred_at FROM LO")
    con.execute(f"CREATE OR REPLACE TEMP VIEW E_wins_{role} AS SELECT {k}, won_at AS occurred_at FROM LO WHERE won_at IS NOT NULL")
    leads_out = known_at(con, f"Q_{role}", f"E_leads_{role}", [k])
    wins_out = known_at(con, f"Q_{role}", f"E_wins_{role}", [k])
    rate, joins = "NULL", ""
    if strength is not None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_mat_{role} AS SELECT {k}, created_at + {days(horizon)} AS occurred_at FROM LO")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_mwin_{role} AS SELECT {k}, created_at + {days(horizon)} AS occurred_at FROM LO WHERE won_in_horizon")
        mat_out = known_at(con, f"Q_{role}", f"E_mat_{role}", [k])
        mwin_out = known_at(con, f"Q_{role}", f"E_mwin_{role}", [k])
        m = float(strength)
        rate = f"(d.n_all + {m} * prior.p) / (c.n_all + {m})"
        joins = f"JOIN {mat_out} c USING (qid) JOIN {mwin_out} d USING (qid) JOIN prior USING (qid)"
    con.execute(
        f"""CREATE TEMP TABLE hist_{role} AS
        SELECT qid, a.n_all AS n_leads, b.n_all AS n_wins, {rate} AS rate
        FROM {leads_out} a JOIN {wins_out} b USING (qid) {joins}"""
    )
