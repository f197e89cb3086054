"""Features and labels from canonical tables, as known at a moment: the batch rendering of the feature tables
(:mod:`features.definitions`) in duckdb SQL.

Pure: canonical tables and ``as_of`` in, a frame out. Nothing dated after ``as_of`` is visible, and every
history feature goes through :func:`features.pit.known_at` at its row's own moment. Three kinds of rows:

- :func:`build_features`: each lead at its arrival (``created_at``), with the fit label. A lead is positive if
  it reached a won stage within ``horizon_days`` of ``created_at`` (and by ``as_of``); it is *mature* once
  ``created_at + horizon <= as_of``. Only mature leads train and evaluate the fit model; a young lead that has
  not won is not a negative.
- :func:`build_landmarks`: each lead still open (no win, no loss) at one age in each span between the ages
  ``label.landmarks_days`` after it arrived, with the label "won in the ``horizon_days`` from then": the rows
  the model of a win from now on learns from (landmarking, van Houwelingen 2007). Only landmarks whose window
  has closed by ``as_of`` are built. Negatives are sampled (``train.max_landmark_rows``) and carry weights
  that undo the sampling.
- :func:`build_at`: given leads at given moments (a test, or a check against the online rendering).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from features.definitions import (ROLES, Age, Calendar, Column, Count, DaysSince, Feature, SmoothedRate,
                                  feature_table, now_table, to_json)
from features.pit import known_at
from leadscore.config import Config
from leadscore.contract import METADATA_KEY, ROLE_COLUMNS, FeatureSet, export_column
from leadscore.duck import connect, days, ident, literal, scalar, utc_timestamps
from leadscore.errors import DataError
from leadscore.paths import atomic_write, default_spill_dir

log = logging.getLogger("leadscore")

CALENDAR_SQL = {"weekday": "isodow", "hour": "hour", "month": "month"}
MAX_STAGES = 8  # stages short of a decision counted for the model of a win from now on
# The events of a shared key's history (see _history): arrivals, wins, matured leads (an arrival shifted by the
# horizon, so a sharded build reads it from the arrivals) and matured wins.
HISTORY_KINDS = ("leads", "wins", "mat", "mwin")


@dataclass(frozen=True)
class Shard:
    """What one partition of a sharded build (:mod:`features.sharded`) takes from all the others. Its tables hold
    only its own leads with their activities and stage changes; everything that depends on other leads was
    counted once over all partitions and comes from here, so no partition needs another's rows and each gives
    its leads exactly the features the one-machine build gives them."""

    activity_types: list[str] | None  # the export's most frequent activity types (None: no activities)
    stages: list[str]  # the stages short of a decision that the model of a win from now on counts
    landmark_rates: tuple[float, float] | None = None  # sampling rates of won and other landmark rows
    threads: int | None = None  # duckdb threads in this partition (its worker's share of the cores)
    # Shared-key history already counted for this partition's query rows (features.sharded): one folder per
    # stream, ``<role or all>-<kind>/part=<index>/``, with each query's qid and n_all.
    history: Path | None = None
    index: int = 0


def build_features(tables: dict, cfg: Config, as_of: datetime, out: Path | None = None,
                   extra_metadata: dict | None = None, spill_dir: Path | None = None,
                   shard: Shard | None = None) -> FeatureSet:
    """Features and the fit label of every lead known at ``as_of``, at its arrival.

    ``tables`` are Arrow tables or datasets (a dataset is scanned lazily, so large exports need not fit in
    memory twice). With ``out``, the frame is written to that Parquet file by duckdb and not returned, which
    keeps the peak memory of large runs bounded by ``features.memory_limit`` (duckdb spills to ``spill_dir``).
    """
    with _session(tables, cfg, as_of, spill_dir, shard) as con:
        _arrival_queries(con)
        table = feature_table(cfg, _activity_types(con, cfg, tables, shard))
        if not table:
            raise DataError("data.leads: no features to learn from; map at least one categorical or numeric column "
                            "(or a campaign, source or created_at)")
        selects, joins = _render(con, table, cfg, shard)
        meta = _lead_columns(con, cfg)
        query = f"""
            SELECT {', '.join('R.' + c for c in meta)},
                   CASE WHEN LO.won_in_horizon THEN 1 WHEN LO.mature THEN 0 END::TINYINT AS label,
                   LO.mature, LO.is_open, LO.won_at,
                   {', '.join(selects)}
            FROM Q JOIN LO USING (qid) JOIN R USING (k) {' '.join(joins)}
            ORDER BY Q.qid"""
        c = con.execute(
            "SELECT COUNT(*) FILTER (WHERE won_in_horizon), COUNT(*) FILTER (WHERE mature AND NOT won_in_horizon), "
            "COUNT(*) FILTER (WHERE NOT mature AND NOT won_in_horizon), COUNT(*) FILTER (WHERE is_open) FROM LO"
        ).fetchall()[0]
        n_leads = scalar(con, "SELECT COUNT(*) FROM L")
        counts = {"leads": int(n_leads), "leads_after_as_of": int(scalar(con, "SELECT COUNT(*) FROM raw_leads") - n_leads),
                  "positive": int(c[0]), "negative": int(c[1]), "immature": int(c[2]), "open": int(c[3])}
        return _finish(con, query, table, cfg, counts, out, extra_metadata)


def build_landmarks(tables: dict, cfg: Config, as_of: datetime, out: Path | None = None,
                    extra_metadata: dict | None = None, spill_dir: Path | None = None,
                    shard: Shard | None = None) -> FeatureSet:
    """Landmark rows: each lead still open at its moment for each landmark of ``label.landmarks_days`` (an age
    drawn in the span that ends at the landmark, :func:`_landmark_candidates`) whose window of ``horizon_days``
    has closed by ``as_of``, with what was known then and whether it was won in that window."""
    with _session(tables, cfg, as_of, spill_dir, shard) as con:
        total, positive, pos_rate, rate = _landmark_queries(con, cfg, shard)
        negative = total - positive
        table = now_table(cfg, _activity_types(con, cfg, tables, shard), _stages(con, cfg, tables, shard))
        selects, joins = _render(con, table, cfg, shard)
        meta = _lead_columns(con, cfg)
        query = f"""
            SELECT {', '.join('R.' + c for c in meta)}, Q.landmark_days, Q.at, Q.label, Q.weight,
                   {', '.join(selects)}
            FROM Q JOIN R USING (k) {' '.join(joins)}
            ORDER BY Q.qid"""
        counts = {"rows": int(scalar(con, "SELECT COUNT(*) FROM Q")), "candidate_rows": int(total),
                  "positive": positive, "negative": negative, "negative_sample_rate": round(rate, 6),
                  "positive_sample_rate": round(pos_rate, 6)}
        return _finish(con, query, table, cfg, counts, out, extra_metadata, mode="landmarks")


def _arrival_queries(con) -> None:
    """Q: each lead at its arrival."""
    con.execute("CREATE TEMP TABLE Q AS SELECT qid, qid AS k, created_at, created_at AS at, campaign_k, "
                "source_k, account_k FROM L")


def _landmark_queries(con, cfg: Config, shard: Shard | None) -> tuple[int, int, float, float]:
    """Q: the landmark rows kept by the sampling; (candidate rows, won candidates, the two sampling rates)."""
    total, positive = _landmark_candidates(con, cfg)
    if shard is not None and shard.landmark_rates is not None:
        pos_rate, rate = shard.landmark_rates  # counted over every partition
    else:
        pos_rate, rate = landmark_rates(cfg, positive, total - positive)
    pos_cut, cut = int(pos_rate * 1_000_003), int(rate * 1_000_003)
    con.execute(
        f"""CREATE TEMP TABLE Q AS
        SELECT (ROW_NUMBER() OVER (ORDER BY m.at, m.lead_id, m.landmark_days) - 1)::BIGINT AS qid, m.*,
               (CASE WHEN m.label = 1 THEN {1.0 / pos_rate} ELSE {1.0 / rate} END)::DOUBLE AS weight
        FROM LM0 m
        WHERE hash(m.lead_id, m.landmark_days) % 1000003 < (CASE WHEN m.label = 1 THEN {pos_cut} ELSE {cut} END)"""
    )
    return total, positive, pos_rate, rate


def shard_queries(tables: dict, cfg: Config, as_of: datetime, kind: str, shard: Shard,
                  spill_dir: Path | None = None) -> pa.Table:
    """The query rows of one partition's build (``kind``: "features" or "landmarks"): qid, the moment ``at`` and
    each shared key's value, for the history counts made over every partition's events (features.sharded)."""
    with _session(tables, cfg, as_of, spill_dir, shard) as con:
        _arrival_queries(con) if kind == "features" else _landmark_queries(con, cfg, shard)
        return _query_rows(con)


def _query_rows(con) -> pa.Table:
    present = json.loads(scalar(con, "SELECT names FROM lead_columns"))
    keys = ", ".join(f"R.{ident(r)}::VARCHAR AS {r}" if r in present else f"NULL::VARCHAR AS {r}" for r in ROLES)
    return utc_timestamps(con.sql(f"SELECT Q.qid, Q.at, {keys} FROM Q JOIN R USING (k)").to_arrow_table())


def landmark_rates(cfg: Config, positive: int, negative: int) -> tuple[float, float]:
    """The sampling rates of won and other landmark rows under ``train.max_landmark_rows``. Wins are rare and
    carry most of the information: all kept up to half the rows, the rest of the rows sampled from the others.
    By a hash of (lead, landmark), so a rerun keeps the same rows; weights undo the sampling."""
    cap = cfg.train.max_landmark_rows
    pos_rate = min(1.0, cap / 2 / max(positive, 1))
    return pos_rate, min(1.0, max(cap - positive * pos_rate, 1) / max(negative, 1))


# Landmark ages are spread by a hash of the lead id: md5's first 32 bits, turned by this odd constant (2^32 over
# the golden ratio) for each next landmark so that a lead's draws differ from one landmark to the next.
SPREAD_BITS = 32
SPREAD_TURN = 2654435769


def landmark_spans(cfg: Config) -> list[tuple[int, int, int]]:
    """(index, configured age, the age before it) of each landmark, in days: the row for landmark ``a`` is drawn
    in ``(before, a]``, ``a`` itself for the arrival landmark 0."""
    ages = sorted(set(cfg.label.landmarks_days))  # the config requires 0
    return [(i, a, ages[i - 1] if i else 0) for i, a in enumerate(ages)]


def landmark_age_seconds(lead_id: str, index: int, age: int, before: int) -> int:
    """The age in seconds of lead ``lead_id``'s row for the ``index``-th landmark (``age`` days, the previous one
    ``before``): the plain Python of what :func:`_landmark_candidates` computes in SQL."""
    spread = int(hashlib.md5(lead_id.encode("utf-8")).hexdigest()[:SPREAD_BITS // 4], 16)
    turned = (spread + index * SPREAD_TURN) % 2 ** SPREAD_BITS
    return age * 86400 - (((age - before) * 86400 * turned) >> SPREAD_BITS)


def _landmark_candidates(con, cfg: Config, keep: bool = True) -> tuple[int, int]:
    """LM0: every (lead, landmark) open at the landmark's moment whose window has closed by as_of; (rows, won
    rows). ``keep=False`` only counts them (the first pass of a sharded build).

    A lead's row for landmark ``a`` (``label.landmarks_days``) is at an age drawn in ``(a_before, a]`` by a hash
    of its id (:func:`landmark_age_seconds`), not at ``a`` itself: open leads are scored at every age, and a model
    that saw ages 30 and 60 only puts a cliff between them (on 8,000 generator leads a lead's probability fell
    from 0.80 to 0.04 within the hour its age passed 45 days). The hash keeps every other lead's rows where they
    were when leads are added."""
    horizon = int(cfg.label.horizon_days)
    spans = ", ".join(f"({i}, {a}, {b})" for i, a, b in landmark_spans(cfg))
    # Open at the landmark: no win and no loss strictly before it (a decision known at as_of).
    query = (
        f"""WITH spread AS (
            SELECT qid, ('0x' || substr(md5(lead_id), 1, {SPREAD_BITS // 4}))::BIGINT AS h FROM L),
        rows AS (
            SELECT L.qid AS k, L.lead_id, L.created_at, a.days AS landmark_days,
                   L.created_at + to_seconds(a.days * 86400 - (((a.days - a.before) * 86400
                       * ((s.h + a.i * {SPREAD_TURN}) % {2 ** SPREAD_BITS})) >> {SPREAD_BITS})) AS at,
                   LO.won_at, LO.lost_at, L.campaign_k, L.source_k, L.account_k
            FROM L JOIN LO USING (qid) JOIN spread s USING (qid) CROSS JOIN (VALUES {spans}) a(i, days, before))
        SELECT * EXCLUDE (won_at, lost_at),
               (r.won_at IS NOT NULL AND r.won_at < r.at + {days(horizon)})::TINYINT AS label
        FROM rows r
        WHERE r.at + {days(horizon)} <= (SELECT t FROM cutoff)
          AND (r.won_at IS NULL OR r.won_at >= r.at) AND (r.lost_at IS NULL OR r.lost_at >= r.at)"""
    )
    if keep:
        con.execute(f"CREATE TEMP TABLE LM0 AS {query}")
        query = "SELECT * FROM LM0"
    total, positive = con.execute(f"SELECT COUNT(*), SUM(label) FROM ({query})").fetchall()[0]
    return int(total), int(positive or 0)


def shared_counts(tables: dict, cfg: Config, as_of: datetime, spill_dir: Path | None = None,
                  threads: int | None = None) -> dict:
    """The first pass of a sharded build, over one partition's tables: its part of every count that depends on
    other partitions' leads. Summed over all partitions (:class:`features.sharded.ShardedBuild`) they make the
    shared history streams and the :class:`Shard` each partition's build takes.

    Returns ``events`` (an Arrow table: role, kind, key, occurred_at, n; the leads, wins and matured wins of each
    campaign, source and account, and of all leads as role ''), ``activity_types`` and
    ``stages`` (type -> events), ``landmarks`` (candidate rows, won rows) and ``arrivals`` (the query rows of
    the features build, as :func:`shard_queries` gives them).
    """
    horizon = int(cfg.label.horizon_days)
    shard = Shard(activity_types=None, stages=[], threads=threads)
    with _session(tables, cfg, as_of, spill_dir, shard) as con:
        roles = [r for r in ROLES if r in json.loads(scalar(con, "SELECT names FROM lead_columns"))]
        later = f"LO.created_at + {days(horizon)}"
        parts = ["SELECT '' AS role, 'leads' AS kind, '' AS key, LO.created_at AS occurred_at FROM LO",
                 f"SELECT '', 'mwin', '', {later} FROM LO WHERE LO.won_in_horizon"]
        for r in roles:
            key = f"R.{ident(r)}::VARCHAR"
            for kind, when, where in (("leads", "LO.created_at", "TRUE"), ("wins", "LO.won_at", "TRUE"),
                                      ("mwin", later, "LO.won_in_horizon")):
                parts.append(f"SELECT {literal(r)}, {literal(kind)}, {key}, {when} FROM LO JOIN R ON R.k = LO.qid "
                             f"WHERE {where}")
        events = con.sql(f"""SELECT role, kind, key, occurred_at, COUNT(*)::BIGINT AS n
                             FROM ({' UNION ALL '.join(parts)})
                             WHERE key IS NOT NULL AND occurred_at IS NOT NULL GROUP BY ALL""").to_arrow_table()
        types = stages = {}
        if cfg.data.leads.created_at and "activities" in tables:
            types = dict(con.execute(f"SELECT type, COUNT(*) FROM ({KNOWN_ACTIVITIES}) GROUP BY type").fetchall())
        if not cfg.snapshot and "outcomes" in tables:
            _stages(con, cfg, tables, shard)
            stages = dict(con.execute("SELECT type, COUNT(*) FROM S GROUP BY type").fetchall())
        landmarks = _landmark_candidates(con, cfg, keep=False) if not cfg.snapshot else (0, 0)
        _arrival_queries(con)
        arrivals = _query_rows(con)
    return {"events": utc_timestamps(events), "activity_types": types, "stages": stages, "landmarks": landmarks,
            "roles": roles, "arrivals": arrivals}


def build_at(tables: dict, cfg: Config, as_of: datetime, moments: pa.Table, spill_dir: Path | None = None) -> FeatureSet:
    """The now-table of given leads at given moments (``moments``: lead_id, at)."""
    with _session(tables, cfg, as_of, spill_dir) as con:
        con.register("moments", moments)
        con.execute(
            """CREATE TEMP TABLE Q AS
            SELECT (ROW_NUMBER() OVER (ORDER BY m.at, m.lead_id) - 1)::BIGINT AS qid, L.qid AS k, L.lead_id,
                   L.created_at, m.at AS at, L.campaign_k, L.source_k, L.account_k
            FROM moments m JOIN L USING (lead_id)"""
        )
        table = now_table(cfg, _activity_types(con, cfg, tables, None), _stages(con, cfg, tables, None))
        selects, joins = _render(con, table, cfg)
        query = f"""SELECT Q.lead_id, Q.at, {', '.join(selects)} FROM Q JOIN R USING (k) {' '.join(joins)}
                    ORDER BY Q.qid"""
        return _finish(con, query, table, cfg, {}, None, None, mode="moments")


class _session:
    """A duckdb connection with the canonical tables registered and the leads (L), their outcomes (LO), their
    activities (A) and stage changes (S) as known at ``as_of``."""

    def __init__(self, tables: dict, cfg: Config, as_of: datetime, spill_dir: Path | None, shard: Shard | None = None):
        self.con = connect(cfg.data.timezone, spill_dir or default_spill_dir(), cfg.features.memory_limit,
                           threads=shard.threads if shard else None)
        self.tables, self.cfg, self.as_of = tables, cfg, as_of

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        try:
            _prepare(self.con, self.tables, self.cfg, self.as_of)
        except BaseException:
            self.con.close()
            raise
        return self.con

    def __exit__(self, *exc) -> None:
        self.con.close()


def _prepare(con: duckdb.DuckDBPyConnection, tables: dict, cfg: Config, as_of: datetime) -> None:
    lc = cfg.data.leads
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
    _outcomes(con, cfg)
    # The leads' own columns, keyed by their qid (k), read once from the export.
    wanted = {*ROLE_COLUMNS, *(export_column(c) for c in (*lc.categorical, *lc.numeric, *lc.passthrough))}
    r_cols = ", ".join(f"r.{ident(c)}" for c in leads_columns if c in wanted and c != "lead_id")
    con.execute(f"CREATE TEMP TABLE R AS SELECT L.qid AS k, L.lead_id, {r_cols} FROM L JOIN raw_leads r USING (lead_id)")
    con.execute("CREATE TEMP TABLE lead_columns AS SELECT ? AS names", [json.dumps(leads_columns)])


def _lead_columns(con, cfg: Config) -> list[str]:
    leads_columns = json.loads(scalar(con, "SELECT names FROM lead_columns"))
    return [*ROLE_COLUMNS, *[ident(export_column(c)) for c in cfg.data.leads.passthrough
                             if export_column(c) in leads_columns]]


# Each known lead's activities by as_of (A), the one rule for a build and for the activity types counted over
# every partition.
KNOWN_ACTIVITIES = """SELECT L.qid AS k, a.type, a.occurred_at FROM raw_activities a JOIN L USING (lead_id)
                      WHERE a.occurred_at <= (SELECT t FROM cutoff)"""


def _activity_types(con, cfg: Config, tables: dict, shard: Shard | None) -> list[str] | None:
    """The most frequent activity types (A: each lead's activities by as_of); None without activities. A shard
    counts its own activities but takes the types counted over all of them."""
    if shard is not None:
        if shard.activity_types is None:
            return None
    elif not cfg.data.leads.created_at or "activities" not in tables \
            or scalar(con, "SELECT COUNT(*) FROM raw_activities") == 0:
        return None
    con.execute(f"CREATE TEMP TABLE A AS {KNOWN_ACTIVITIES}")
    if shard is not None:
        return list(shard.activity_types)
    return [r[0] for r in con.execute(
        "SELECT type FROM A GROUP BY type ORDER BY COUNT(*) DESC, type LIMIT ?", [cfg.features.max_activity_types]
    ).fetchall()]


def _stages(con, cfg: Config, tables: dict, shard: Shard | None) -> list[str]:
    """The stages short of a decision (S: each lead's changes to them by as_of): the configured other_stages, or
    the most frequent ones seen (in a shard: over all partitions)."""
    if cfg.snapshot or "outcomes" not in tables:
        return []
    decided = ", ".join(literal(s) for s in (*cfg.won_stages, *cfg.lost_stages)) or "NULL"
    con.execute(
        f"""CREATE TEMP TABLE S AS
        SELECT L.qid AS k, o.stage AS type, o.occurred_at FROM raw_outcomes o JOIN L USING (lead_id)
        WHERE o.occurred_at <= (SELECT t FROM cutoff) AND o.stage NOT IN ({decided})"""
    )
    if cfg.label.other_stages:
        return list(cfg.label.other_stages)[:MAX_STAGES]
    if shard is not None:
        return list(shard.stages)
    return [r[0] for r in con.execute("SELECT type FROM S GROUP BY type ORDER BY COUNT(*) DESC, type LIMIT ?",
                                      [MAX_STAGES]).fetchall()]


def _finish(con, query: str, table: list[Feature], cfg: Config, counts: dict, out: Path | None,
            extra_metadata: dict | None, mode: str | None = None) -> FeatureSet:
    fs = FeatureSet(frame=None, categorical=[f.name for f in table if f.kind == "categorical"],
                    numeric=[f.name for f in table if f.kind == "numeric"], labels={f.name: f.words for f in table},
                    counts=counts, mode=mode or ("snapshot" if cfg.snapshot else "events"), definitions=to_json(table))
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
    """LO: each lead's outcome as known at as_of (won_at, lost_at, mature, won_in_horizon, is_open)."""
    if cfg.snapshot:
        # The export's label column is the outcome: known where filled in; a positive lead is no longer open.
        con.execute(
            """CREATE TEMP TABLE LO AS
            SELECT qid, created_at, campaign_k, source_k, account_k, CAST(NULL AS TIMESTAMPTZ) AS won_at,
                   CAST(NULL AS TIMESTAMPTZ) AS lost_at, outcome_label IS NOT NULL AS mature,
                   COALESCE(outcome_label = 1, FALSE) AS won_in_horizon,
                   COALESCE(outcome_label <> 1, TRUE) AS is_open
            FROM L"""
        )
        return
    horizon = int(cfg.label.horizon_days)
    won = ", ".join(literal(s) for s in cfg.won_stages)
    lost = ", ".join(literal(s) for s in cfg.lost_stages) or "NULL"
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
        SELECT qid, created_at, campaign_k, source_k, account_k, O.won_at, O.lost_at,
               L.created_at + {days(horizon)} <= (SELECT t FROM cutoff) AS mature,
               O.won_at IS NOT NULL AND O.won_at < L.created_at + {days(horizon)} AS won_in_horizon,
               O.won_at IS NULL AND O.lost_at IS NULL AS is_open
        FROM L LEFT JOIN O USING (lead_id)"""
    )


def _render(con: duckdb.DuckDBPyConnection, table: list[Feature], cfg: Config,
            shard: Shard | None = None) -> tuple[list[str], list[str]]:
    """One SQL expression per feature of ``table`` for each query row of Q (qid; k, the lead; its created_at;
    ``at``, the moment; its role keys), over the point-in-time counts the table needs: one call of
    :func:`known_at` per stream and key. In a shard, history over shared keys was counted already
    (``shard.history``)."""
    selects, joins = [], []
    counted, levels = {}, {}
    for stream, events in (("activities", "A"), ("stages", "S")):
        mine = [f.source for f in table if isinstance(f.source, (Count, DaysSince)) and f.source.stream == stream]
        if not mine:
            continue
        windows = tuple(sorted({s.window_days for s in mine if isinstance(s, Count) and s.window_days}))
        levels[stream] = list(dict.fromkeys(s.level for s in mine if s.level is not None))
        con.execute(f"CREATE OR REPLACE TEMP VIEW Q_{stream} AS SELECT qid, k, Q.at AS at FROM Q")
        # One pass over the lead's own events, counted in total and per type.
        counted[stream] = known_at(con, f"Q_{stream}", events, ["k"], windows,
                                   last=any(isinstance(s, DaysSince) for s in mine), few_per_key=True, by="type",
                                   levels=levels[stream])
        joins.append(f"LEFT JOIN {counted[stream]} USING (qid)")
    rates = {f.source.key: f.source.strength for f in table if isinstance(f.source, SmoothedRate)}
    if rates:
        _overall_rate(con, cfg, shard)
    for role in dict.fromkeys(f.source.key for f in table if isinstance(f.source, (Count, SmoothedRate))
                              and f.source.key in ROLES):
        _history(con, cfg, role, rates.get(role), shard)
        joins.append(f"LEFT JOIN hist_{role} USING (qid)")
    for f in table:
        s = f.source
        if isinstance(s, Column):
            expr = f"R.{ident(s.column)}"
        elif isinstance(s, Calendar):
            expr = f"DATE_PART('{CALENDAR_SQL[s.part]}', Q.created_at)::DOUBLE"
        elif isinstance(s, Age):
            expr = "DATE_DIFF('second', Q.created_at, Q.at) / 86400.0"
        elif isinstance(s, (Count, DaysSince)) and s.key == "lead":
            out, lv = counted[s.stream], levels[s.stream]
            suffix = "" if s.level is None else f"_{lv.index(s.level)}"
            expr = (f"{out}.n_{s.window_days}d{suffix}::DOUBLE" if isinstance(s, Count) else
                    f"DATE_DIFF('second', {out}.last_at{suffix}, Q.at) / 86400.0")
        elif isinstance(s, Count):
            expr = f"hist_{s.key}.n_{s.stream}::DOUBLE"
        else:
            expr = f"hist_{s.key}.rate"
        selects.append(f"{expr} AS {f.name}")
    return selects, joins


def _overall_rate(con, cfg: Config, shard: Shard | None) -> None:
    """prior: the overall matured win rate known at each query's moment (what a key with no history is pulled
    toward)."""
    horizon = int(cfg.label.horizon_days)
    if shard is not None and shard.history is not None:
        den, num = _counted(con, shard, "", "mat"), _counted(con, shard, "", "mwin")
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW Q_all AS SELECT qid, 1 AS g, Q.at AS at FROM Q")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_mature_all AS SELECT 1 AS g, created_at + {days(horizon)} AS occurred_at FROM LO")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_mwins_all AS SELECT 1 AS g, created_at + {days(horizon)} AS occurred_at FROM LO WHERE won_in_horizon")
        den = known_at(con, "Q_all", "E_mature_all", ["g"])
        num = known_at(con, "Q_all", "E_mwins_all", ["g"])
    con.execute(f"""CREATE TEMP TABLE prior AS SELECT qid, CASE WHEN d.n_all > 0 THEN n.n_all / d.n_all END AS p
                    FROM {den} d JOIN {num} n USING (qid)""")


def _history(con, cfg: Config, role: str, strength: float | None, shard: Shard | None) -> None:
    """hist_<role>: the earlier leads and wins of each query's campaign, source or account as known at its moment,
    and (with a ``strength``) its smoothed win rate."""
    horizon = int(cfg.label.horizon_days)
    k = f"{role}_k"
    if shard is not None and shard.history is not None:
        leads_out, wins_out, mat_out, mwin_out = (_counted(con, shard, role, kind) for kind in HISTORY_KINDS)
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW Q_{role} AS SELECT qid, {k}, Q.at AS at FROM Q")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_leads_{role} AS SELECT {k}, created_at AS occurred_at FROM LO")
        con.execute(f"CREATE OR REPLACE TEMP VIEW E_wins_{role} AS SELECT {k}, won_at AS occurred_at FROM LO WHERE won_at IS NOT NULL")
        leads_out = known_at(con, f"Q_{role}", f"E_leads_{role}", [k])
        wins_out = known_at(con, f"Q_{role}", f"E_wins_{role}", [k])
        if strength is not None:
            con.execute(f"CREATE OR REPLACE TEMP VIEW E_mat_{role} AS SELECT {k}, created_at + {days(horizon)} AS occurred_at FROM LO")
            con.execute(f"CREATE OR REPLACE TEMP VIEW E_mwin_{role} AS SELECT {k}, created_at + {days(horizon)} AS occurred_at FROM LO WHERE won_in_horizon")
            mat_out = known_at(con, f"Q_{role}", f"E_mat_{role}", [k])
            mwin_out = known_at(con, f"Q_{role}", f"E_mwin_{role}", [k])
    rate, joins = "NULL", ""
    if strength is not None:
        m = float(strength)
        rate = f"(d.n_all + {m} * prior.p) / (c.n_all + {m})"
        joins = f"JOIN {mat_out} c USING (qid) JOIN {mwin_out} d USING (qid) JOIN prior USING (qid)"
    con.execute(
        f"""CREATE TEMP TABLE hist_{role} AS
        SELECT qid, a.n_all AS n_leads, b.n_all AS n_wins, {rate} AS rate
        FROM {leads_out} a JOIN {wins_out} b USING (qid) {joins}"""
    )


def stream_name(role: str, kind: str) -> str:
    """The folder (and file) name of one shared-key history stream."""
    return f"{role or 'all'}-{kind}"


def _counted(con, shard: Shard, role: str, kind: str) -> str:
    """A view of one stream's counts for this partition's queries (qid, n_all), made over every partition."""
    assert kind in HISTORY_KINDS
    view = f"counted_{role or 'all'}_{kind}"
    folder = shard.history / stream_name(role, kind) / f"part={shard.index}"
    if any(folder.glob("*.parquet")):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT qid, n_all "
                    f"FROM read_parquet({literal(str(folder / '*.parquet'))})")
    else:  # no query rows here
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT NULL::BIGINT AS qid, NULL::BIGINT AS n_all WHERE FALSE")
    return view
