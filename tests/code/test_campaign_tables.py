"""Campaign tables: intervals, early read, summary, the page (pure functions on small frames)."""

import numpy as np
import pandas as pd
import pytest

from reports.campaign_page import render_report
from reports.campaign_quality import (
    QUALITY_COLUMNS,
    poisson_binomial_interval,
    quality_table,
    summary_lines,
    weekly_trend,
)

AS_OF = pd.Timestamp("2026-06-30", tz="UTC")


def _scored():
    return pd.DataFrame({
        "campaign": ["A", "A", "A", "B", "B", "New"],
        "source": ["Web"] * 6,
        "probability": [0.5, 0.2, 0.1, 0.3, 0.3, 0.6],
        "tier": ["A", "C", "D", "B", "B", "A"],
        "mature": [True, True, False, True, False, False],
        "label": [1, 0, np.nan, 1, np.nan, np.nan],
        "is_open": [False, True, True, False, True, True],
        "created_at": pd.to_datetime(["2026-01-05", "2026-02-01", "2026-06-01", "2026-01-10", "2026-06-10",
                                      "2026-06-20"], utc=True),
    })


def test_quality_table_adds_up():
    costs = pd.DataFrame({"campaign": ["A", "B"], "cost": [80.0, 60.0]})
    t = quality_table(_scored(), "campaign", costs, AS_OF, 90).set_index("campaign")
    assert list(t.columns) == QUALITY_COLUMNS
    assert t.loc["A", "leads"] == 3 and t.loc["A", "matured_leads"] == 2 and t.loc["A", "open_leads"] == 2
    # No win dates, so the close-lag distribution is a straight line: the open lead of A is 29 days old and has
    # had 29/90 of its chance; too few groups to measure how they differ, so the lead model is taken as is.
    e = 29 / 90
    rest = 0.1 * (1 - e) / (1 - 0.1 * e)
    assert t.loc["A", "outcome_factor"] == 1.0 and t.loc["A", "early_wins_expected"] == pytest.approx(0.1 * e)
    assert t.loc["A", "expected_closes"] == pytest.approx(1 + rest)  # the matured win, the lost lead, the open one
    assert t.loc["A", "expected_closes_low"] >= 1 and t.loc["A", "expected_closes_high"] <= 2
    assert t.loc["A", "closes_so_far"] == 1
    assert t.loc["A", "expected_closes_matured"] == pytest.approx(0.7)
    assert t.loc["A", "actual_closes"] == 1  # the immature lead does not count, won or not
    assert t.loc["A", "cost_per_expected_close"] == pytest.approx(80 / (1 + rest))
    assert t.loc["A", "tier_a_share"] + t.loc["A", "tier_c_share"] + t.loc["A", "tier_d_share"] == pytest.approx(1)
    # A campaign with no matured leads: no actual rate, an early read, and weeks until its outcomes are known.
    assert pd.isna(t.loc["New", "actual_closes"]) and pd.isna(t.loc["New", "cost"])
    assert t.loc["New", "early_read"] == "no clear difference yet" and abs(t.loc["New", "early_read_z"]) < 1.645
    assert t.loc["New", "weeks_until_outcomes"] == 12  # created 10 days before as_of, 90-day horizon
    assert pd.isna(t.loc["A", "early_read"])  # mostly matured: no early read
    assert t["leads"].sum() == 6 and t["closes_so_far"].sum() == 2


def _young(rates: dict[str, float], n: int = 400, age_days: int = 60) -> pd.DataFrame:
    """Groups of open leads, all at p = 0.1 and ``age_days`` old, whose early wins come at ``rates``; an old
    campaign of matured leads at p = 0.1 whose wins (10 %) came at lags spread evenly over the horizon."""
    parts = []
    for name, rate in rates.items():
        won = np.arange(n) < round(n * rate)
        created = AS_OF - pd.Timedelta(days=age_days)
        parts.append(pd.DataFrame({"campaign": name, "probability": 0.1, "mature": False, "is_open": ~won,
                                   "label": np.where(won, 1.0, np.nan), "created_at": created,
                                   "won_at": np.where(won, created + pd.Timedelta(days=age_days / 2), pd.NaT)}))
    lags = pd.to_timedelta(np.linspace(1, 89, 200), unit="D")
    old = pd.Timestamp("2025-06-01", tz="UTC")
    parts.append(pd.DataFrame({"campaign": "Old", "probability": 0.1, "mature": True, "is_open": False,
                               "label": np.r_[np.ones(200), np.zeros(1800)], "created_at": old,
                               "won_at": np.r_[old + lags, [pd.NaT] * 1800]}))
    return pd.concat(parts, ignore_index=True).assign(source="Web", tier="B")


def test_young_campaign_that_wins_less_than_its_exposure_implies_is_marked_down():
    """60 days old with lags spread evenly: each lead has had 2/3 of its 0.1, so 6.7 % should have won by now.
    Five campaigns do; "Dud" wins 1 %. Its expected closes fall well below the lead model's 40, the others' stay."""
    scored = _young({"A": 0.067, "B": 0.067, "C": 0.067, "D": 0.067, "Dud": 0.01})
    t = quality_table(scored, "campaign", None, AS_OF, 90).set_index("campaign")
    lag_share = np.mean(np.linspace(1, 89, 200) <= 60)
    assert t.loc["A", "early_wins_expected"] == pytest.approx(400 * 0.1 * lag_share, rel=0.02)
    assert t.loc["Dud", "outcome_factor"] < 0.5 < 0.8 < t.loc["A", "outcome_factor"] < 1.25
    assert t.loc["Dud", "expected_closes"] < 25 and t.loc["Dud", "expected_closes_high"] < 40
    for name in "ABCD":
        low, mid, high = t.loc[name, ["expected_closes_low", "expected_closes", "expected_closes_high"]]
        assert 30 < low < mid < high < 55
        assert t.loc[name, "expected_closes"] == pytest.approx(40, rel=0.1)
    assert t.loc["Dud", "early_read"] == "worse than average"
    assert (t.loc[list("ABCD"), "early_read"] == "no clear difference yet").all()
    # The lead model alone cannot tell them apart: every lead has the same probability.
    assert t.loc["Dud", "mean_probability"] == t.loc["A", "mean_probability"]


def test_poisson_binomial_interval_is_exact_for_small_groups_and_normal_for_large():
    rng = np.random.default_rng(1)
    p = rng.beta(2, 8, 300)
    lo, hi = poisson_binomial_interval(p)
    draws = (rng.random((20_000, len(p))) < p).sum(axis=1)
    assert np.mean(draws < lo) <= 0.05 + 0.01 and np.mean(draws > hi) <= 0.05 + 0.01
    assert np.mean((draws >= lo) & (draws <= hi)) >= 0.88
    big = rng.beta(2, 8, 5000)
    lo, hi = poisson_binomial_interval(big)
    sd = np.sqrt(np.sum(big * (1 - big)))
    assert lo == pytest.approx(big.sum() - 1.645 * sd, rel=1e-3) and hi == pytest.approx(big.sum() + 1.645 * sd, rel=1e-3)


def test_poisson_binomial_interval_equals_the_full_transform():
    """The short transform (counts up to mean + 12 sd) gives the interval of the full (n + 1)-point one."""
    rng = np.random.default_rng(4)
    for n, a, b in ((40, 2, 8), (700, 1, 30), (1500, 8, 2), (2000, 2, 8)):
        p = rng.beta(a, b, n)
        omega = 2 * np.pi * np.arange(n + 1) / (n + 1)
        terms = np.log((1 - p)[None, :] + p[None, :] * np.exp(1j * omega)[:, None])
        pmf = np.clip(np.fft.fft(np.exp(terms.sum(axis=1))).real / (n + 1), 0, None)
        cdf = np.cumsum(pmf / pmf.sum())
        assert poisson_binomial_interval(p) == (float(np.searchsorted(cdf, 0.05)), float(np.searchsorted(cdf, 0.95)))


def test_early_read_flags_a_clearly_better_new_campaign():
    n = 600
    rng = np.random.default_rng(2)
    old = pd.DataFrame({"campaign": rng.choice(["X", "Y", "Z"], n), "probability": rng.beta(2, 10, n),
                        "mature": True, "is_open": False, "label": 0.0,
                        "created_at": pd.Timestamp("2025-06-01", tz="UTC")})
    new = pd.DataFrame({"campaign": "Launch", "probability": rng.beta(6, 10, 200), "mature": False,
                        "is_open": True, "label": np.nan, "created_at": pd.Timestamp("2026-06-15", tz="UTC")})
    scored = pd.concat([old, new], ignore_index=True).assign(source="Web", tier="B")
    t = quality_table(scored, "campaign", None, AS_OF, 90).set_index("campaign")
    assert t.loc["Launch", "early_read"] == "better than average" and t.loc["Launch", "early_read_z"] > 1.645
    assert t.loc["Launch", "weeks_until_outcomes"] == 11
    lines = summary_lines(t.reset_index(), None, None)
    assert any("Launch looks better than average" in line for line in lines)


def test_summary_says_what_changed_since_the_previous_report():
    costs = pd.DataFrame({"campaign": ["A", "B"], "cost": [80.0, 60.0]})
    now = quality_table(_scored(), "campaign", costs, AS_OF, 90)
    before = now[now["campaign"] != "New"].assign(mean_probability=lambda d: d["mean_probability"] - 0.05)
    lines = summary_lines(now, before, "20260601T000000Z-abc")
    assert any(line.startswith("Since the previous report (20260601T000000Z-abc): new campaigns: New") for line in lines)


def test_expected_against_actual_names_the_campaigns_outside_their_interval():
    rng = np.random.default_rng(4)
    n = 3000
    scored = pd.DataFrame({"campaign": rng.choice(["Fair", "Overrated"], n), "probability": 0.3, "mature": True,
                           "is_open": False, "created_at": pd.Timestamp("2025-06-01", tz="UTC")})
    # "Fair" closes as forecast; "Overrated" half as often.
    rate = np.where(scored["campaign"] == "Fair", 0.3, 0.15)
    scored = scored.assign(label=(rng.random(n) < rate).astype(float), source="Web", tier="B")
    line = next(x for x in summary_lines(quality_table(scored, "campaign", None, AS_OF, 90), None, None)
                if x.startswith("Expected vs actual"))
    assert "for 1 of 2 campaigns (outside it: Overrated: " in line and "Fair:" not in line
    # No campaign mapped: one group of every lead, said as such.
    alone = summary_lines(quality_table(scored.assign(campaign=None), "campaign", None, AS_OF, 90), None, None)
    line = next(x for x in alone if x.startswith("Expected vs actual"))
    assert "closes against 900.0 expected, outside its 90% interval" in line and "campaigns" not in line.split(".")[0]


def test_page_is_self_contained_with_every_chart():
    scored = _scored()
    costs = pd.DataFrame({"campaign": ["A", "B"], "cost": [10.0, 20.0]})
    camp = quality_table(scored, "campaign", costs, AS_OF, 90)
    page = render_report(camp, quality_table(scored, "source", None, AS_OF, 90),
                         weekly_trend(scored, "campaign", AS_OF), weekly_trend(scored, "source", AS_OF),
                         ["line one"], "Campaign lead quality", "test", "notes")
    for name in ("cost", "calibration", "tiers", "trend_leads", "trend_probability", "trend_sources"):
        assert f'data-chart="{name}"' in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "<script" not in page


def test_account_table_against_a_plain_loop():
    """Per account: the chance at least one open lead wins (independent given the model), expected wins, the
    best lead (ties: the smaller id), ranked; leads without an account left out."""
    from reports.accounts import account_table

    rng = np.random.default_rng(3)
    n = 400
    scores = pd.DataFrame({"lead_id": [f"L{i:04d}" for i in range(n)],
                           "probability": rng.choice([0.0, 0.01, 0.2, 0.5, 0.97, 1.0], n),
                           "tier": rng.choice(list("ABCD"), n)})
    account = pd.Series(rng.choice([*[f"Acme {k}" for k in range(40)], None], n))
    got = account_table(scores, account).set_index("account")
    want = {}
    for (_, lead), acc in zip(scores.iterrows(), account):
        if pd.isna(acc):
            continue
        w = want.setdefault(acc, {"none": 1.0, "sum": 0.0, "n": 0, "best": None})
        w["none"] *= 1 - lead["probability"]
        w["sum"] += lead["probability"]
        w["n"] += 1
        if w["best"] is None or (lead["probability"], w["best"]["lead_id"]) > (w["best"]["probability"], lead["lead_id"]):
            w["best"] = lead
    assert set(got.index) == set(want)
    for acc, w in want.items():
        row = got.loc[acc]
        assert row["chance_any_win"] == pytest.approx(1 - w["none"], abs=1e-6)
        assert row["expected_wins"] == pytest.approx(w["sum"], abs=1e-6) and row["open_leads"] == w["n"]
        assert row["best_lead_id"] == w["best"]["lead_id"] and row["best_lead_tier"] == w["best"]["tier"]
    assert got["rank"].tolist() == list(range(1, len(got) + 1))
    assert got["chance_any_win"].is_monotonic_decreasing
    assert account_table(scores.head(0), account.head(0)).empty
