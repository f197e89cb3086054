"""Campaign outcome factors: fitted from young leads' early wins, applied on the odds (pure functions)."""

import numpy as np
import pandas as pd
import pytest

from models.early_outcomes import OutcomeFactors, close_lag_cdf, exposure

AS_OF = pd.Timestamp("2026-06-30", tz="UTC")


def _leads(rates: dict[str, float], n: int = 500, age_days: int = 45) -> tuple[pd.DataFrame, np.ndarray]:
    """Young leads at p = 0.1 per campaign, exactly ``rate`` of them won halfway through their age; an old campaign
    whose 300 matured wins came at lags spread evenly over 90 days."""
    parts = []
    for name, rate in rates.items():
        won = np.arange(n) < round(n * rate)
        created = AS_OF - pd.Timedelta(days=age_days)
        parts.append(pd.DataFrame({"campaign": name, "mature": False, "label": np.where(won, 1.0, np.nan),
                                   "created_at": created,
                                   "won_at": np.where(won, created + pd.Timedelta(days=age_days / 2), pd.NaT)}))
    old = pd.Timestamp("2025-06-01", tz="UTC")
    parts.append(pd.DataFrame({"campaign": "Old", "mature": True, "label": 1.0, "created_at": old,
                               "won_at": old + pd.to_timedelta(np.linspace(0.5, 89.5, 300), unit="D")}))
    frame = pd.concat(parts, ignore_index=True)
    return frame, np.where(frame["mature"], np.nan, 0.1)


def test_close_lag_distribution_and_exposure():
    frame, _ = _leads({"A": 0.05})
    cdf = close_lag_cdf(frame, 90)
    assert cdf[0] == 0 and cdf[-1] == 1 and np.all(np.diff(cdf) >= 0)
    assert cdf[45] == pytest.approx(0.5, abs=0.01)  # lags spread evenly: half within 45 days
    e = exposure(frame, AS_OF, 90)
    assert np.all(e[frame["mature"].to_numpy()] == 1) and e[0] == pytest.approx(0.5, abs=0.01)
    # Without win dates (or too few matured wins), the share of the horizon that has passed.
    assert close_lag_cdf(frame.drop(columns="won_at"), 90)[30] == pytest.approx(1 / 3)


def test_factors_mark_down_the_campaign_that_wins_less_than_its_exposure_implies():
    """45 days of 90 with lags spread evenly: 5 % of leads at p = 0.1 should have won. One campaign won 1 %."""
    frame, p = _leads({"A": 0.05, "B": 0.05, "C": 0.05, "D": 0.05, "Dud": 0.01})
    factors = OutcomeFactors("campaign").fit(frame, p, AS_OF, 90)
    assert factors.factors_["Dud"] < 0.5 and all(0.85 < factors.factors_[c] < 1.15 for c in "ABCD")
    # The level of all young leads (the dud pulls it a little below 1) for campaigns with none, or never seen.
    assert 0.8 < factors.default_ < 1 and factors.factors_.get("Old", factors.default_) == factors.default_
    scored = {"campaign": np.array(["Dud", "A", "Unknown", None], dtype=object)}
    out = factors.apply(scored, np.array([0.1, 0.1, 0.1, 0.1]))
    level = factors.default_ * 0.1 / (0.9 + factors.default_ * 0.1)
    assert out[0] < 0.06 and out[1] == pytest.approx(0.1, rel=0.15) and out[2] == out[3] == pytest.approx(level)
    # On the odds: a lead near certain stays below 1 however good its campaign.
    factors.factors_["A"] = 3.0
    assert 0.99 < factors.apply({"campaign": np.array(["A"], dtype=object)}, np.array([0.99]))[0] < 1
    # The same answer for one lead (the API) as for many (the batch).
    many = {"campaign": np.array(["Dud", "A", "Unknown"] * 40, dtype=object)}
    assert np.array_equal(factors.apply(many, np.full(120, 0.2))[:3],
                          factors.apply({"campaign": many["campaign"][:3]}, np.full(3, 0.2)))


def test_too_few_campaigns_with_early_outcomes_leave_the_model_as_is():
    frame, p = _leads({"A": 0.05, "Dud": 0.0}, n=40)
    factors = OutcomeFactors("campaign").fit(frame, p, AS_OF, 90)
    assert factors.factors_ == {} and factors.default_ == 1.0
    assert np.array_equal(factors.apply({"campaign": np.array(["Dud"], dtype=object)}, np.array([0.3])), [0.3])
    assert factors.summary()["campaigns_down"] == 0


def test_early_wins_are_counted_over_every_young_lead_with_or_without_a_campaign():
    """An export with no campaign mapped has no groups to compare: the model is left as it is, but the log still
    says how many early wins the young leads brought against how many their probabilities gave."""
    frame, p = _leads({"A": 0.05, "B": 0.03})
    young = ~frame["mature"].to_numpy()
    expected = float(np.sum(p[young] * exposure(frame, AS_OF, 90)[young]))
    wins = float((frame["label"][young] == 1).sum())
    for column in ("campaign", None):
        data = frame if column else frame.assign(campaign=None)
        summary = OutcomeFactors("campaign").fit(data, p, AS_OF, 90).summary()
        assert summary["early_wins"] == wins == 40
        assert summary["early_wins_expected"] == pytest.approx(expected, abs=0.05)
