"""Features and labels from canonical tables, as known when each lead arrived.

Pure: canonical tables and ``as_of`` in, a frame out. Nothing dated after ``as_of`` is visible, and every
history feature goes through :func:`features.pit.known_at` at the lead's own ``created_at``. The same code
serves training (mature leads) and scoring (open leads).

Labels. A lead is positive if it reached a won stage within ``horizon_days`` of ``created_at`` (and by
``as_of``). It is *mature* once ``created_at + horizon <= as_of``: only mature leads train and evaluate
models. A young lead that has not won is not a negative; it is immature and only scored.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from features.pit import known_at
from leadscore.config import Config
from leadscore.contract import OUTCOME_COLUMNS, ROLE_COLUMNS, export_column
from leadscore.duck import connect, ident, literal, scalar, utc_timestamps
from leadscore.errors import DataError
from leadscore.paths import default_spill_dir

log = logging.getLogger("leadscore")



@dataclass
class FeatureSet:
    """The frame (one row per lead) and which of its columns are model features.

    ``frame`` is None when the features were written straight to a Parquet file (large exports).
    """

    frame: pa.Table | None
    categorical: list[str]
    numeric: list[str]
    labels: dict[str, str] = field(default_factory=dict)  # feature -> words a person reads
    counts: dict[str, int] = field(default_factory=dict)
    mode: str = "events"  # "snapshot": outcome from a label column, random split, no history features

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def metadata(self, extra: dict | None = None) -> dict:
        """What a reader of the saved frame needs to know besides its columns."""
        return {"categorical": self.categorical, "numeric": self.numeric, "labels": self.labels,
                "counts": self.counts, "mode": self.mode, **(extra or {})}


METADATA_KEY = "leadscore.features"


def slug(text: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    return s or "col"


def attribute_features(lc) -> dict[str, str]:
    """Feature name -> export column of the mapped categorical, then numeric, columns: a name no other column
    has taken. Batch features (here) and online features (features.online) both name them with this."""
    used = set(ROLE_COLUMNS) | set(OUTCOME_COLUMNS)
    names = {}
    for col in (*lc.categorical, *lc.numeric):
        name, n = slug(col), 2
        while name in used:
            name, n = f"attr_{slug(col)}" if n == 2 else f"attr_{slug(col)}_{n}", n + 1
        used.add(name)
        names[name] = col
    return names


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
    horizon = int(cfg.label.horizon_days)
    for name, table in tables.items():
        con.register(f"raw_{name}", table)
    leads_columns = [r[0] for r in con.execute("DESCRIBE raw_leads").fetchall()]
    con.execute("CREATE TEMP TABLE cutoff AS SELECT CAST(? AS TIMESTAMPTZ) AS t", [as_of])

    # Leads known at as_of, narrow, with integer keys (joins and sorts on integers are several times faster).
    known = "created_at <= (SELECT t FROM cutoff)" if lc.created_at else "TRUE"
    ranks = ", ".join(f"CASE WHEN {r} IS NOT NULL THEN DENSE_RANK() OVER (ORDER BY {r}) END AS {r}_k"
                      for r in ("campaign", "source", "account"))
    con.execute(
        f"""CREATE TEMP TABLE L AS
        SELECT (ROW_NUMBER() OVER (ORDER BY created_at, lead_id) - 1)::BIGINT AS qid, lead_id, created_at,
               {"outcome_label," if "outcome_label" in leads_columns else ""} {ranks}
        FROM raw_leads WHERE {known}"""
    )
    n_leads = scalar(con, "SELECT COUNT(*) FROM L")
    n_later = scalar(con, "SELECT COUNT(*) FROM raw_leads") - n_leads

    if cfg.snapshot:
        # The export's label column is the outcome: known where filled in; a positive lead is no longer open.
        con.execute(
            """CREATE TEMP TABLE LO AS
            SELECT qid, CAST(NULL AS TIMESTAMPTZ) AS won_at, outcome_label IS NOT NULL AS mature,
                   COALESCE(outcome_label = 1, FALSE) AS won_in_horizon,
                   COALESCE(outcome_label <> 1, TRUE) AS is_open
            FROM L"""
        )
    else:
        # Outcomes as known at as_of: the first win and the first loss of each lead.
        won = ", ".join(literal(s) for s in cfg.label.won_stages)
        lost = ", ".join(literal(s) for s in cfg.label.lost_stages) or "NULL"
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
                   L.created_at + INTERVAL {horizon} DAY <= (SELECT t FROM cutoff) AS mature,
                   O.won_at IS NOT NULL AND O.won_at < L.created_at + INTERVAL {horizon} DAY AS won_in_horizon,
                   O.won_at IS NULL AND O.lost_at IS NULL AS is_open
            FROM L LEFT JOIN O USING (lead_id)"""
        )

    selects: list[str] = []
    categorical: list[str] = []
    numeric: list[str] = []
    labels: dict[str, str] = {}
    joins: list[str] = []

    # The lead's own attributes.
    for role in ("campaign", "source"):
        if getattr(lc, role):
            selects.append(f"R.{role} AS {role}_name")
            categorical.append(f"{role}_name")
            labels[f"{role}_name"] = getattr(lc, role)
    for f, col in attribute_features(lc).items():
        selects.append(f"R.{ident(export_column(col))} AS {f}")
        (numeric if col in lc.numeric else categorical).append(f)
        labels[f] = col

    # Calendar, in the configured time zone.
    for part, label in (("isodow", "weekday of sign-up"), ("hour", "hour of sign-up"), ("month", "month of sign-up")):
        if not lc.created_at:
            break
        f = f"created_{'weekday' if part == 'isodow' else part}"
        selects.append(f"DATE_PART('{part}', L.created_at)::DOUBLE AS {f}")
        numeric.append(f)
        labels[f] = label

    # Engagement before creation: per activity type and in total, in trailing windows.
    windows = tuple(sorted(set(fc.windows_days)))
    has_activities = "activities" in tables and scalar(con, "SELECT COUNT(*) FROM raw_activities") > 0
    if lc.created_at and has_activities:
        con.execute(
            """CREATE TEMP TABLE A AS
            SELECT L.qid AS k, a.type, a.occurred_at FROM raw_activities a JOIN L USING (lead_id)
            WHERE a.occurred_at <= (SELECT t FROM cutoff)"""
        )
        types = [r[0] for r in con.execute(
            "SELECT type FROM A GROUP BY type ORDER BY COUNT(*) DESC, type LIMIT ?", [fc.max_activity_types]
        ).fetchall()]
        con.execute("CREATE TEMP VIEW Q_self AS SELECT qid, qid AS k, created_at AS at FROM L")
        # One pass over the activities: each lead's own events, counted in total and per type.
        counted = known_at(con, "Q_self", "A", ["k"], windows, last=True, few_per_key=True, by="type", levels=types)
        type_keys: list[str] = []
        for t in types:  # two types may slug alike ("E-mail open", "email open")
            key, n = slug(t), 2
            while key in type_keys or key == "any":
                key, n = f"{slug(t)}_{n}", n + 1
            type_keys.append(key)
        for suffix, key, text in (("", "any", "activity"), *((f"_{i}", type_keys[i], t) for i, t in enumerate(types))):
            for w in windows:
                f = f"act_{key}_{w}d"
                selects.append(f"{counted}.n_{w}d{suffix}::DOUBLE AS {f}")
                numeric.append(f)
                labels[f] = f"{text} in the {w} days before sign-up"
        f = "days_since_last_activity"
        selects.append(f"DATE_DIFF('second', {counted}.last_at, L.created_at) / 86400.0 AS {f}")
        numeric.append(f)
        labels[f] = "days since the last activity before sign-up"
        joins.append(f"LEFT JOIN {counted} USING (qid)")

    # History of the lead's campaign, source and account as known at created_at (needs outcomes with dates).
    if not cfg.snapshot:
        _history(con, cfg, selects, numeric, labels, joins)

    # The leads' own columns, keyed by qid, read once from the export.
    wanted = {*ROLE_COLUMNS, *(export_column(c) for c in (*lc.categorical, *lc.numeric, *lc.passthrough))}
    r_cols = ", ".join(f"r.{ident(c)}" for c in leads_columns if c in wanted and c != "lead_id")
    con.execute(f"CREATE TEMP TABLE R AS SELECT L.qid, L.lead_id, {r_cols} FROM L JOIN raw_leads r USING (lead_id)")

    if not selects:
        raise DataError("data.leads: no features to learn from; map at least one categorical or numeric column "
                        "(or a campaign, source or created_at)")
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
    fs = FeatureSet(frame=None, categorical=categorical, numeric=numeric, labels=labels, counts=counts,
                    mode="snapshot" if cfg.snapshot else "events")
    if out is None:
        fs.frame = utc_timestamps(con.sql(query).to_arrow_table())
        return fs
    # Large exports: duckdb writes the file itself, so the frame never sits in Python memory.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    meta_json = json.dumps(fs.metadata(extra_metadata))
    con.execute(f"COPY ({query}) TO {literal(str(tmp))} (FORMAT parquet, KV_METADATA {{{literal(METADATA_KEY)}: {literal(meta_json)}}})")
    tmp.replace(out)
    return fs


def _history(con, cfg: Config, selects: list[str], numeric: list[str], labels: dict[str, str], joins: list[str]) -> None:
    """Earlier leads, earlier wins and a smoothed win rate of each lead's campaign, source and account."""
    lc, horizon = cfg.data.leads, int(cfg.label.horizon_days)
    con.execute("CREATE TEMP VIEW Q_all AS SELECT qid, 1 AS g, created_at AS at FROM L")
    con.execute(f"CREATE TEMP VIEW E_mature_all AS SELECT 1 AS g, created_at + INTERVAL {horizon} DAY AS occurred_at FROM LO")
    con.execute(f"CREATE TEMP VIEW E_mwins_all AS SELECT 1 AS g, created_at + INTERVAL {horizon} DAY AS occurred_at FROM LO WHERE won_in_horizon")
    den = known_at(con, "Q_all", "E_mature_all", ["g"])
    num = known_at(con, "Q_all", "E_mwins_all", ["g"])
    con.execute(
        f"""CREATE TEMP TABLE prior AS SELECT qid, CASE WHEN d.n_all > 0 THEN n.n_all / d.n_all END AS p
        FROM {den} d JOIN {num} n USING (qid)"""
    )
    m = float(cfg.features.prior_strength)
    for role in ("campaign", "source", "account"):
        if not getattr(lc, role):
            continue
        k = f"{role}_k"
        con.execute(f"CREATE OR REPLACE TEMP VIEW Q_{role} AS SELECT qid, {k}, created_at AS at FROM L")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_leads_{role} AS SELECT {k}, created_at AS occurred_at FROM LO")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_wins_{role} AS SELECT {k}, won_at AS occurred_at FROM LO WHERE won_at IS NOT NULL")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_mat_{role} AS SELECT {k}, created_at + INTERVAL {horizon} DAY AS occurred_at FROM LO")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_mwin_{role} AS SELECT {k}, created_at + INTERVAL {horizon} DAY AS occurred_at FROM LO WHERE won_in_horizon")
        leads_out = known_at(con, f"Q_{role}", f"E_leads_{role}", [k])
        wins_out = known_at(con, f"Q_{role}", f"E_wins_{role}", [k])
        mat_out = known_at(con, f"Q_{role}", f"E_mat_{role}", [k])
        mwin_out = known_at(con, f"Q_{role}", f"E_mwin_{role}", [k])
        con.execute(
            f"""CREATE TEMP TABLE hist_{role} AS
            SELECT qid, a.n_all::DOUBLE AS {role}_prior_leads, b.n_all::DOUBLE AS {role}_prior_wins,
                   (d.n_all + {m} * prior.p) / (c.n_all + {m}) AS {role}_win_rate
            FROM {leads_out} a JOIN {wins_out} b USING (qid) JOIN {mat_out} c USING (qid)
                 JOIN {mwin_out} d USING (qid) JOIN prior USING (qid)"""
        )
        for f, text in ((f"{role}_prior_leads", f"earlier leads from this {role}"),
                        (f"{role}_prior_wins", f"earlier wins from this {role}"),
                        (f"{role}_win_rate", f"win rate of this {role} (smoothed)")):
            selects.append(f"hist_{role}.{f}")
            numeric.append(f)
            labels[f] = text
        joins.append(f"LEFT JOIN hist_{role} USING (qid)")
