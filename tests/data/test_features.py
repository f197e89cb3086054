"""Labels with maturity, and features that cannot see the future."""

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from conftest import make_config

from features.build import build_features
from ingest.canonical import ingest

UTC = timezone.utc


def _tables(leads, outcomes, activities=()):
    ts = pa.timestamp("us", "UTC")
    return {
        "leads": pa.table({
            "lead_id": [r[0] for r in leads], "created_at": pa.array([r[1] for r in leads], ts),
            "campaign": [r[2] for r in leads], "source": ["Web"] * len(leads), "account": [r[3] for r in leads],
            "export:Country": ["US"] * len(leads), "export:Industry": ["Retail"] * len(leads),
            "export:Job Level": ["VP"] * len(leads), "export:Employees": [100.0] * len(leads),
            "export:Owner": ["Ann"] * len(leads),
        }),
        "outcomes": pa.table({"lead_id": [r[0] for r in outcomes], "stage": [r[1] for r in outcomes],
                              "occurred_at": pa.array([r[2] for r in outcomes], ts),
                              "amount": pa.array([None] * len(outcomes), pa.float64())}),
        "activities": pa.table({"lead_id": pa.array([r[0] for r in activities], pa.string()),
                                "type": pa.array([r[1] for r in activities], pa.string()),
                                "occurred_at": pa.array([r[2] for r in activities], ts)}),
    }


def d(month, day, hour=0):
    return datetime(2025, month, day, hour, tzinfo=UTC)


def test_labels_follow_the_maturity_rule(tmp_path):
    cfg = make_config(tmp_path, tmp_path / "home")  # horizon 90 days, lost stage "Closed Lost"
    leads = [
        ("won_in_time", d(1, 1), "C1", "Acme"),
        ("won_late", d(1, 1), "C1", "Acme"),
        ("young_won", d(6, 1), "C1", "Beta"),
        ("young_open", d(6, 1), "C1", "Beta"),
        ("old_lost", d(1, 2), "C2", "Beta"),
        ("old_silent", d(1, 3), "C2", "Acme"),
    ]
    outcomes = [
        ("won_in_time", "Closed Won", d(2, 1)),
        ("won_late", "Closed Won", d(5, 1)),  # 120 days: a win, but outside the horizon
        ("young_won", "Closed Won", d(6, 20)),
        ("old_lost", "Closed Lost", d(2, 1)),
    ]
    fs = build_features(_tables(leads, outcomes), cfg, d(6, 30))
    f = fs.frame.to_pandas().set_index("lead_id")
    assert f.loc["won_in_time", ["label", "mature", "is_open"]].tolist() == [1, True, False]
    assert f.loc["won_late", ["label", "mature"]].tolist() == [0, True]
    assert f.loc["young_won", ["label", "mature"]].tolist() == [1, False]
    assert pd.isna(f.loc["young_open", "label"]) and not f.loc["young_open", "mature"] and f.loc["young_open", "is_open"]
    assert f.loc["old_lost", ["label", "is_open"]].tolist() == [0, False]
    assert f.loc["old_silent", ["label", "is_open"]].tolist() == [0, True]
    assert fs.counts == {"leads": 6, "leads_after_as_of": 0, "positive": 2, "negative": 3, "immature": 1, "open": 2}


def test_history_counts_only_what_was_known(tmp_path):
    cfg = make_config(tmp_path, tmp_path / "home")
    leads = [("a1", d(1, 1), "C", "Acme"), ("a2", d(1, 1), "C", "Acme"), ("a3", d(1, 20), "C", "Acme"),
             ("a4", d(3, 1), "C", "Acme")]
    outcomes = [("a1", "Closed Won", d(1, 20)), ("a2", "Closed Won", d(2, 15))]
    acts = [("a3", "Web Visit", d(1, 19)), ("a3", "Web Visit", d(1, 20)), ("a3", "Web Visit", d(1, 5)),
            ("a3", "Email Open", d(1, 25))]
    fs = build_features(_tables(leads, outcomes, acts), cfg, d(6, 30))
    f = fs.frame.to_pandas().set_index("lead_id")
    # a2 arrived at the same instant as a1: not an earlier lead.
    assert f.loc["a2", "account_prior_leads"] == 0
    # a3 arrives at the instant of a1's win: the win is not yet known.
    assert f.loc["a3", ["account_prior_leads", "account_prior_wins"]].tolist() == [2, 0]
    assert f.loc["a4", ["account_prior_leads", "account_prior_wins"]].tolist() == [3, 2]
    # Activities: the one at the instant of creation and the later one do not count.
    assert f.loc["a3", ["act_web_visit_7d", "act_web_visit_30d", "act_email_open_90d"]].tolist() == [1, 2, 0]
    assert f.loc["a3", "days_since_last_activity"] == 1.0


def _before(tables: dict, t0: datetime) -> dict:
    """Every table cut at t0: what the export would have held then."""
    cut = {}
    for name, table in tables.items():
        col = {"leads": "created_at", "outcomes": "occurred_at", "activities": "occurred_at"}.get(name)
        cut[name] = table.filter(pc.less(table[col], pa.scalar(t0, pa.timestamp("us", "UTC")))) if col else table
    return cut


def _assert_same(got: pd.DataFrame, want: pd.DataFrame, numeric: list[str], categorical: list[str]) -> None:
    for col in numeric:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-12, equal_nan=True,
                                   err_msg=col)
    for col in categorical:
        assert got[col].astype(object).tolist() == want[col].astype(object).tolist(), col


def test_features_do_not_change_when_the_future_is_removed(crm_small, tmp_path):
    """Cut every table at t0: features of leads created before t0 must be identical to the full build."""
    cfg = make_config(crm_small, tmp_path / "home")
    full = ingest(cfg)
    t0 = datetime(2025, 9, 1, tzinfo=UTC)
    cut = _before(full.tables, t0)
    a = build_features(full.tables, cfg, full.as_of)
    b = build_features(cut, cfg, t0)
    assert a.features == b.features
    fa = a.frame.to_pandas().set_index("lead_id")
    fb = b.frame.to_pandas().set_index("lead_id")
    assert len(fb) > 1000
    _assert_same(fa.loc[fb.index], fb, a.numeric, a.categorical)


def test_landmark_rows_do_not_change_when_the_future_is_removed(crm_small, tmp_path):
    """The same cut for the rows of the model of a win from now on: every landmark row the cut export has is in
    the full build with the same label and features, and the now-features of every full-build landmark before
    t0 are the same computed from the cut export."""
    from features.build import build_at, build_landmarks

    cfg = make_config(crm_small, tmp_path / "home")
    full = ingest(cfg)
    t0 = datetime(2025, 9, 1, tzinfo=UTC)
    cut = _before(full.tables, t0)
    a = build_landmarks(full.tables, cfg, full.as_of)
    b = build_landmarks(cut, cfg, t0)
    assert a.features == b.features and a.counts["negative_sample_rate"] == b.counts["negative_sample_rate"] == 1
    key = ["lead_id", "landmark_days"]
    fa = a.frame.to_pandas().set_index(key)
    fb = b.frame.to_pandas().set_index(key)
    assert len(fb) > 1000 and fb.index.isin(fa.index).all()
    fa_b = fa.loc[fb.index]
    assert (fa_b["label"] == fb["label"]).all()
    _assert_same(fa_b, fb, [*a.numeric, "weight"], a.categorical)

    # Landmarks before t0 whose horizon runs past it: not training rows of the cut export, but their features
    # must be what the cut export knows.
    early = a.frame.to_pandas().query("at <= @t0")[["lead_id", "at"]]
    assert len(early) > len(fb)
    moments = pa.Table.from_pandas(early, preserve_index=False)
    got_full = build_at(full.tables, cfg, full.as_of, moments).frame.to_pandas()
    got_cut = build_at(cut, cfg, t0, moments).frame.to_pandas()
    assert len(got_full) == len(got_cut) == len(early)
    _assert_same(got_full, got_cut, a.numeric, a.categorical)
