"""One definition per feature: the batch rendering (duckdb SQL) and the online rendering (arrays over a snapshot)
of the feature tables (each lead at arrival; each lead at a later moment, the landmark rows), both against a
plain loop over the definitions, on random exports in several time zones (a positive and a negative UTC offset, a
half-hour one, daylight-saving changes), ties and sub-second times included."""

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features.build import build_at, build_features, build_landmarks, landmark_age_seconds, landmark_spans
from features.definitions import Age, Calendar, Column, Count, DaysSince, from_json
from features.online import OnlineFeatures, snapshot_tables
from leadscore.config import parse_config

UTC = timezone.utc
T0 = datetime(2026, 3, 1, tzinfo=UTC)  # the window holds the spring clock changes of New York, Berlin, Lord Howe
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Europe/Berlin", "Australia/Lord_Howe"]
HORIZON = 5
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CONFIG = """
[data]
timezone = "{zone}"
[data.leads]
path = "leads.csv"
id = "id"
created_at = "created"
campaign = "campaign"
source = "source"
account = "account"
categorical = ["Country"]
numeric = ["Employees"]
[data.outcomes]
path = "stages.csv"
lead_id = "id"
stage = "stage"
occurred_at = "at"
[data.activities]
path = "activities.csv"
lead_id = "id"
type = "type"
occurred_at = "at"
[label]
won_stages = ["Won"]
lost_stages = ["Lost"]
horizon_days = {horizon}
landmarks_days = [0, 1, 3, 8]
[features]
windows_days = [1, 3]
max_activity_types = 2
prior_strength = 2
"""

# Hours over five weeks, sometimes with a second or half a second more: ties between events and leads are
# frequent, and sub-second times test that no rendering rounds them.
instants = st.builds(lambda h, us: T0 + timedelta(hours=h, microseconds=us),
                     st.integers(0, 24 * 35), st.sampled_from([0, 0, 0, 1, 500_000, 1_000_000]))
lead_rows = st.lists(st.tuples(instants, st.sampled_from(["C1", "C2", None]), st.sampled_from(["S1", None]),
                               st.sampled_from(["A1", "A2", "A3", None]), st.sampled_from(["US", "DE"]),
                               st.sampled_from([10.0, 250.0, None])), min_size=2, max_size=18)


@st.composite
def exports(draw):
    leads = draw(lead_rows)
    n = len(leads)
    outcomes = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(["Won", "Lost", "Qualified"]),
                                       st.integers(1, 24 * 12)), max_size=n))
    activities = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(["Visit", "Mail", "Demo"]),
                                         st.integers(-24 * 5, 24 * 2), st.sampled_from([0, 0, 1, 999_999])),
                               max_size=3 * n))
    return leads, outcomes, activities, draw(st.sampled_from(ZONES))


def tables_of(leads, outcomes, activities):
    ts = pa.timestamp("us", "UTC")
    created = [r[0] for r in leads]
    lead_table = pa.table({
        "lead_id": [f"L{i}" for i in range(len(leads))], "created_at": pa.array(created, ts),
        "campaign": pa.array([r[1] for r in leads], pa.string()), "source": pa.array([r[2] for r in leads], pa.string()),
        "account": pa.array([r[3] for r in leads], pa.string()), "export:Country": [r[4] for r in leads],
        "export:Employees": pa.array([r[5] for r in leads], pa.float64()),
    })
    stages = pa.table({"lead_id": pa.array([f"L{i}" for i, _, _ in outcomes], pa.string()),
                       "stage": pa.array([s for _, s, _ in outcomes], pa.string()),
                       "occurred_at": pa.array([created[i] + timedelta(hours=h) for i, _, h in outcomes], ts),
                       "amount": pa.array([None] * len(outcomes), pa.float64())})
    acts = pa.table({"lead_id": pa.array([f"L{i}" for i, _, _, _ in activities], pa.string()),
                     "type": pa.array([t for _, t, _, _ in activities], pa.string()),
                     "occurred_at": pa.array([created[i] + timedelta(hours=h, microseconds=us)
                                              for i, _, h, us in activities], ts)})
    return {"leads": lead_table, "outcomes": stages, "activities": acts}


def plain_loop(table, tables, cfg, as_of) -> pd.DataFrame:
    """Each definition evaluated the slow, obvious way: Python datetimes and a loop over every event."""
    leads = tables["leads"].to_pylist()
    leads = [r for r in leads if r["created_at"] <= as_of]
    stages = [r for r in tables["outcomes"].to_pylist() if r["occurred_at"] <= as_of]
    acts = [r for r in tables["activities"].to_pylist() if r["occurred_at"] <= as_of]
    horizon = timedelta(days=cfg.label.horizon_days)
    won_at = {}
    for r in sorted(stages, key=lambda r: r["occurred_at"]):
        if r["stage"] == "Won":
            won_at.setdefault(r["lead_id"], r["occurred_at"])
    won_in_horizon = {r["lead_id"] for r in leads if r["lead_id"] in won_at
                      and won_at[r["lead_id"]] < r["created_at"] + horizon}
    zone = ZoneInfo(cfg.data.timezone)
    rows = []
    for lead in leads:
        t = lead["created_at"]
        row = {"lead_id": lead["lead_id"]}
        for f in table:
            s = f.source
            if isinstance(s, Column):
                row[f.name] = lead[s.column]
            elif isinstance(s, Calendar):
                local = t.astimezone(zone)
                row[f.name] = float({"weekday": local.isoweekday(), "hour": local.hour, "month": local.month}[s.part])
            elif isinstance(s, Count) and s.stream == "activities":
                row[f.name] = float(sum(1 for a in acts if a["lead_id"] == lead["lead_id"] and a["occurred_at"] < t
                                        and a["occurred_at"] >= t - timedelta(days=s.window_days)
                                        and (s.level is None or a["type"] == s.level)))
            elif isinstance(s, DaysSince):
                before = [a["occurred_at"] for a in acts if a["lead_id"] == lead["lead_id"] and a["occurred_at"] < t]
                row[f.name] = (math.floor(t.timestamp()) - math.floor(max(before).timestamp())) / 86400 if before \
                    else float("nan")
            elif lead[s.key] is None:
                row[f.name] = float("nan")
            elif isinstance(s, Count):
                same = [o for o in leads if o[s.key] == lead[s.key]]
                times = [o["created_at"] for o in same] if s.stream == "leads" else \
                    [won_at[o["lead_id"]] for o in same if o["lead_id"] in won_at]
                row[f.name] = float(sum(1 for x in times if x < t))
            else:
                matured = [o for o in leads if o["created_at"] + horizon < t]
                overall = (sum(o["lead_id"] in won_in_horizon for o in matured) / len(matured)) if matured else float("nan")
                mine = [o for o in matured if o[s.key] == lead[s.key]]
                wins = sum(o["lead_id"] in won_in_horizon for o in mine)
                row[f.name] = (wins + s.strength * overall) / (len(mine) + s.strength)
        rows.append(row)
    return pd.DataFrame(rows).set_index("lead_id")


def assert_same(got: pd.DataFrame, want: pd.DataFrame, table, what: str) -> None:
    for f in table:
        if f.kind == "numeric":
            np.testing.assert_allclose(got[f.name].to_numpy(float), want[f.name].to_numpy(float), rtol=1e-12,
                                       atol=1e-12, equal_nan=True, err_msg=f"{what}: {f.name}")
        else:
            a = got[f.name].astype("string").fillna("<NA>").tolist()
            b = want[f.name].astype("string").fillna("<NA>").tolist()
            assert a == b, f"{what}: {f.name}"


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# Days are 24 hours on every path. Where a clock change lies inside a window or a horizon, a calendar day would be
# 23 hours: an activity exactly a day (or three) before a lead just after New York's spring change...
ACROSS_NEW_YORK = ([(_at(178), "C1", None, "A1", "US", 10.0), (_at(180), "C1", None, "A1", "US", 10.0)], [],
                   [(0, "Visit", -24, 0), (0, "Mail", -72, 0), (1, "Visit", -26, 0)], "America/New_York")
# ... and a lead that matures across Berlin's change: 5 days of 24 hours after it, not 5 days less an hour.
ACROSS_BERLIN = ([(_at(24 * 25 + 10), "C1", None, "A1", "DE", 10.0),
                  (_at(24 * 30 + 9) + timedelta(microseconds=500_000), "C1", None, "A1", "DE", 10.0),
                  (_at(24 * 30 + 10), "C1", None, "A2", "DE", 10.0)], [(0, "Won", 30)], [], "Europe/Berlin")


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case=exports())
@example(case=ACROSS_NEW_YORK)
@example(case=ACROSS_BERLIN)
def test_batch_and_online_features_equal_the_plain_loop_in_every_time_zone(case):
    leads, outcomes, activities, zone = case
    cfg = parse_config(CONFIG.format(zone=zone, horizon=HORIZON), Path("/cfg/leadscore.toml"))
    tables = tables_of(leads, outcomes, activities)
    as_of = max(r[0] for r in leads) + timedelta(hours=1)
    fs = build_features(tables, cfg, as_of)
    table = from_json(fs.definitions)
    assert [f.name for f in table] == fs.features
    batch = fs.frame.to_pandas().set_index("lead_id")
    want = plain_loop(table, tables, cfg, as_of)
    assert_same(batch.loc[want.index], want, table, f"batch in {zone}")

    # Scoring: the same leads through the snapshot a scoring run saves, each at its own created_at.
    online = OnlineFeatures(*snapshot_tables(fs.frame.to_pandas(), tables["activities"], cfg, as_of, fs.definitions))
    got = pd.DataFrame(online.build(tables["leads"].to_pandas(), cfg, fs.features)).set_index("lead_id")
    assert_same(got.loc[want.index], want, table, f"online in {zone}")
    # As a cluster scores: each part of the leads with only its own activities.
    rows = tables["leads"].to_pandas()
    parts = [rows["lead_id"].to_numpy()[i::2] for i in range(2)]
    for lead_ids, own in zip(parts, online.own_events(parts)):
        piece = pd.DataFrame(online.without_own().with_own(own).build(rows[rows["lead_id"].isin(lead_ids)], cfg,
                                                                       fs.features)).set_index("lead_id")
        assert_same(piece, want.loc[piece.index], table, f"a part online in {zone}")


def test_a_lead_created_after_the_snapshot_sees_outcomes_only_up_to_as_of():
    """The API scores leads that arrive after the last scoring run: matured leads are counted as of as_of."""
    leads = [(T0, "C1", None, "A1", "US", 10.0), (T0 + timedelta(days=1), "C1", None, "A1", "US", 10.0)]
    cfg = parse_config(CONFIG.format(zone="UTC", horizon=HORIZON), Path("/cfg/leadscore.toml"))
    tables = tables_of(leads, [(0, "Won", 2)], [])
    as_of = T0 + timedelta(days=3)  # before either lead matures (5 days)
    fs = build_features(tables, cfg, as_of)
    online = OnlineFeatures(*snapshot_tables(fs.frame.to_pandas(), None, cfg, as_of, fs.definitions))
    late = {"lead_id": np.array(["NEW"], object), "created_at": np.array([int((T0 + timedelta(days=30)).timestamp() * 1e6)]),
            "campaign": np.array(["C1"], object), "source": np.array([None], object), "account": np.array(["A1"], object),
            "export:Country": np.array(["US"], object), "export:Employees": np.array([10.0])}
    got = online.build(late, cfg, fs.features)
    assert got["campaign_prior_leads"][0] == 2 and got["campaign_prior_wins"][0] == 1
    # Neither lead had matured by as_of, so nothing is known of win rates yet: no prior, no rate.
    assert np.isnan(got["campaign_win_rate"][0])


def plain_loop_now(table, tables, cfg, as_of, moments: list[tuple[str, datetime]]) -> pd.DataFrame:
    """The now-table the slow, obvious way: each (lead, moment) with what was known strictly before the moment
    (outcomes up to as_of only)."""
    leads = {r["lead_id"]: r for r in tables["leads"].to_pylist() if r["created_at"] <= as_of}
    stages = sorted((r for r in tables["outcomes"].to_pylist() if r["occurred_at"] <= as_of),
                    key=lambda r: r["occurred_at"])
    acts = [r for r in tables["activities"].to_pylist() if r["occurred_at"] <= as_of]
    horizon = timedelta(days=cfg.label.horizon_days)
    won_at = {}
    for r in stages:
        if r["stage"] == "Won":
            won_at.setdefault(r["lead_id"], r["occurred_at"])
    won_in_horizon = {i for i, r in leads.items() if i in won_at and won_at[i] < r["created_at"] + horizon}
    zone = ZoneInfo(cfg.data.timezone)

    def days(t, before):
        return (math.floor(t.timestamp()) - math.floor(before.timestamp())) / 86400

    rows = []
    for lead_id, t in moments:
        lead, known = leads[lead_id], min(t, as_of + timedelta(microseconds=1))
        row = {"lead_id": lead_id, "at": t}
        for f in table:
            s = f.source
            if isinstance(s, Column):
                row[f.name] = lead[s.column]
            elif isinstance(s, Calendar):
                local = lead["created_at"].astimezone(zone)
                row[f.name] = float({"weekday": local.isoweekday(), "hour": local.hour, "month": local.month}[s.part])
            elif isinstance(s, Age):
                row[f.name] = days(t, lead["created_at"])
            elif isinstance(s, Count) and s.stream == "activities":
                row[f.name] = float(sum(1 for a in acts if a["lead_id"] == lead_id and a["occurred_at"] < t
                                        and a["occurred_at"] >= t - timedelta(days=s.window_days)
                                        and (s.level is None or a["type"] == s.level)))
            elif isinstance(s, DaysSince):
                events = acts if s.stream == "activities" else [r for r in stages if r["stage"] == s.level]
                before = [a["occurred_at"] for a in events if a["lead_id"] == lead_id and a["occurred_at"] < t
                          and (s.stream != "activities" or s.level is None or a["type"] == s.level)]
                row[f.name] = days(t, max(before)) if before else float("nan")
            elif lead[s.key] is None:
                row[f.name] = float("nan")
            elif isinstance(s, Count):
                same = [o for o in leads.values() if o[s.key] == lead[s.key]]
                times = [o["created_at"] for o in same] if s.stream == "leads" else \
                    [won_at[o["lead_id"]] for o in same if o["lead_id"] in won_at]
                row[f.name] = float(sum(1 for x in times if x < t))
            else:
                matured = [o for o in leads.values() if o["created_at"] + horizon < known]
                overall = (sum(o["lead_id"] in won_in_horizon for o in matured) / len(matured)) if matured else float("nan")
                mine = [o for o in matured if o[s.key] == lead[s.key]]
                wins = sum(o["lead_id"] in won_in_horizon for o in mine)
                row[f.name] = (wins + s.strength * overall) / (len(mine) + s.strength)
        rows.append(row)
    return pd.DataFrame(rows)


def landmark_rows_by_loop(tables, cfg, as_of) -> pd.DataFrame:
    """Which (lead, landmark) rows exist and their label, the obvious way: open at t = created_at + the age drawn
    for that lead in the span ending at the landmark (no win and no loss before t), t + horizon passed by as_of;
    label: won in [t, t + horizon)."""
    stages = [r for r in tables["outcomes"].to_pylist() if r["occurred_at"] <= as_of]
    first = {}
    for r in sorted(stages, key=lambda r: r["occurred_at"]):
        first.setdefault((r["lead_id"], r["stage"]), r["occurred_at"])
    horizon = timedelta(days=cfg.label.horizon_days)
    rows = []
    for lead in tables["leads"].to_pylist():
        if lead["created_at"] > as_of:
            continue
        won, lost = first.get((lead["lead_id"], "Won")), first.get((lead["lead_id"], "Lost"))
        for index, age, before in landmark_spans(cfg):
            seconds = landmark_age_seconds(lead["lead_id"], index, age, before)
            assert before * 86400 < seconds <= age * 86400 or seconds == age == 0
            t = lead["created_at"] + timedelta(seconds=seconds)
            if t + horizon > as_of or (won is not None and won < t) or (lost is not None and lost < t):
                continue
            rows.append({"lead_id": lead["lead_id"], "landmark_days": age, "at": t,
                         "label": int(won is not None and won < t + horizon)})
    return pd.DataFrame(rows, columns=["lead_id", "landmark_days", "at", "label"])


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case=exports(), hours=st.lists(st.integers(0, 24 * 20), min_size=1, max_size=6))
@example(case=ACROSS_NEW_YORK, hours=[0, 30, 50])
@example(case=ACROSS_BERLIN, hours=[0, 24 * 5, 24 * 9])
def test_landmark_rows_and_features_at_any_moment_equal_the_plain_loop(case, hours):
    """Landmark rows (which exist, their label, their features) and the now-table at arbitrary moments, batch
    and online, against the loop; a moment after as_of sees nothing after as_of."""
    leads, outcomes, activities, zone = case
    cfg = parse_config(CONFIG.format(zone=zone, horizon=HORIZON), Path("/cfg/leadscore.toml"))
    tables = tables_of(leads, outcomes, activities)
    as_of = max(r[0] for r in leads) + timedelta(hours=1)

    lm = build_landmarks(tables, cfg, as_of)
    table = from_json(lm.definitions)
    got = lm.frame.to_pandas()
    want_rows = landmark_rows_by_loop(tables, cfg, as_of)
    key = ["lead_id", "landmark_days"]
    assert sorted(map(tuple, got[key].to_numpy().tolist())) == sorted(map(tuple, want_rows[key].to_numpy().tolist()))
    assert (got["weight"] == 1.0).all()  # a small export keeps every row
    got = got.sort_values(key).reset_index(drop=True)
    want_rows = want_rows.sort_values(key).reset_index(drop=True)
    assert got["label"].tolist() == want_rows["label"].tolist()
    assert (pd.to_datetime(got["at"], utc=True) == pd.to_datetime(want_rows["at"], utc=True)).all()
    if len(got):
        want = plain_loop_now(table, tables, cfg, as_of, list(zip(want_rows["lead_id"], want_rows["at"])))
        assert_same(got, want, table, f"landmarks in {zone}")

    # Any moment: some after arrival, one just past as_of (what scoring asks for).
    ids = [f"L{i}" for i in range(len(leads))]
    moments = [(ids[j % len(ids)], leads[j % len(ids)][0] + timedelta(hours=h)) for j, h in enumerate(hours)]
    moments = [(i, min(t, as_of)) for i, t in moments] + [(ids[0], as_of + timedelta(microseconds=1))]
    want = plain_loop_now(table, tables, cfg, as_of, moments)
    batch = build_at(tables, cfg, as_of, pa.table({"lead_id": pa.array([m[0] for m in moments], pa.string()),
                                                   "at": pa.array([m[1] for m in moments], pa.timestamp("us", "UTC"))}))
    got = batch.frame.to_pandas().sort_values(["at", "lead_id"], kind="stable").reset_index(drop=True)
    order = want.assign(at=pd.to_datetime(want["at"], utc=True)).sort_values(["at", "lead_id"], kind="stable")
    assert_same(got, order.reset_index(drop=True), table, f"batch now-table in {zone}")

    fs = build_features(tables, cfg, as_of)
    online = OnlineFeatures(*snapshot_tables(fs.frame.to_pandas(), tables["activities"], cfg, as_of, fs.definitions,
                                             ".", lm.definitions, tables["outcomes"]))
    rows = tables["leads"].to_pandas().set_index("lead_id").loc[[m[0] for m in moments]].reset_index()
    at = np.array([(m[1] - EPOCH) // timedelta(microseconds=1) for m in moments], np.int64)
    got = pd.DataFrame(online.build(rows, cfg, [f.name for f in table], table="now", at=at))
    assert_same(got, want, table, f"online now-table in {zone}")

    # As a cluster scores: each part of the leads with only its own activities and stage changes.
    parts = [ids[0::2], ids[1::2]]
    shared = online.without_own()
    for lead_ids, own in zip(parts, online.own_events(parts)):
        mine = rows["lead_id"].isin(lead_ids).to_numpy()
        piece = shared.with_own(own).build(rows[mine], cfg, [f.name for f in table], table="now", at=at[mine])
        assert_same(pd.DataFrame(piece), want[mine].reset_index(drop=True), table, f"a part's now-table in {zone}")


def test_landmark_ages_in_sql_equal_the_python_rule_for_any_landmark_list():
    """The SQL draw of each landmark row's age against :func:`landmark_age_seconds`, for a list with a duplicate
    and the widest span the config allows, and lead ids of any text; every age in its span."""
    text = CONFIG.format(zone="UTC", horizon=HORIZON).replace("landmarks_days = [0, 1, 3, 8]",
                                                              "landmarks_days = [3650, 0, 1, 1, 2]")
    cfg = parse_config(text, Path("/cfg/leadscore.toml"))
    ids = ["L0", "", "Ünïcødé-lead 42", "x" * 300, "0x7f", "lead with spaces"]
    tables = tables_of([(T0 + timedelta(hours=i), None, None, None, "US", None) for i in range(len(ids))], [], [])
    tables["leads"] = tables["leads"].set_column(0, "lead_id", pa.array(ids, pa.string()))
    lm = build_landmarks(tables, cfg, T0 + timedelta(days=3650 + HORIZON + 1)).frame.to_pandas()
    assert len(lm) == len(ids) * 4  # every lead is open at every landmark, 1 counted once
    spans = {age: (index, before) for index, age, before in landmark_spans(cfg)}
    for row in lm.itertuples():
        created = T0 + timedelta(hours=ids.index(row.lead_id))
        seconds = (pd.Timestamp(row.at) - pd.Timestamp(created)).total_seconds()
        index, before = spans[row.landmark_days]
        assert seconds == landmark_age_seconds(row.lead_id, index, row.landmark_days, before)
        assert before * 86400 < seconds <= row.landmark_days * 86400 or seconds == row.landmark_days == 0
