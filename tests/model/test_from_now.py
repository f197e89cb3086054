"""On 200,000 generator leads (drifting base rate, campaigns of very different quality, some new), one run of the
pipeline is measured against the generator's truth and its simulated future: issue 14's acceptance for the
published ``probability`` (a win in the next horizon days after the export) and issue 15's for the campaign
report's expected closes."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import large_export
from sklearn.metrics import roc_auc_score

from flows import steps
from ingest.synthetic import future_win_probability
from leadscore.paths import Home, read_latest
from models.metrics import expected_calibration_error

pytestmark = pytest.mark.slow

QUEUE_CAPACITY = 600  # the demo's three rep queues: 150 + 200 + 250 leads


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One run: ingest, features, training, scores and the campaign report."""
    cfg, truth = large_export(200_000, 5, tmp_path_factory.mktemp("from_now"))
    steps.ingest_step(cfg, "r1")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r1")
    assert trained["promoted"], trained["gate_reasons"]
    steps.score_step(cfg, "r1")
    steps.report_step(cfg, "r1")
    return cfg, truth


def test_probability_from_now_beats_fit_and_the_truths_fit_and_age(published):
    """The reference is the best a model of fit and age can do: the truth's own buying chance and lag
    distribution (``future_win_probability``). Engagement and stages since arrival must add to it, and the
    probabilities must be calibrated on the open leads as they are today, most of them far past the horizon."""
    cfg, truth = published
    home = Home(cfg.home)
    folder = read_latest(home.scores)
    scores = pd.read_parquet(folder / "scores.parquet")
    as_of = pd.Timestamp(json.loads((folder / "manifest.json").read_text())["as_of"])
    created = pd.read_parquet(home.canonical / "leads.parquet", columns=["lead_id", "created_at"])
    d = scores.merge(created, on="lead_id").merge(truth, left_on="lead_id", right_on="Lead ID")
    assert len(d) == len(scores) >= 100_000
    won = pd.to_datetime(d["won_at"], utc=True)
    horizon = pd.Timedelta(days=cfg.label.horizon_days)
    future = ((won > as_of) & (won <= as_of + horizon)).to_numpy(int)
    age = ((as_of - pd.to_datetime(d["created_at"], utc=True)).dt.total_seconds() / 86400).to_numpy()
    reference = future_win_probability(d["buy_probability"].to_numpy(), age, cfg.label.horizon_days)
    assert (age > cfg.label.horizon_days).mean() > 0.6  # most open leads are past the horizon
    assert future.sum() >= 1_000  # enough future wins to measure against

    p, fit = d["probability"].to_numpy(), d["fit"].to_numpy()

    def top_rate(values):
        return future[np.argsort(-values, kind="stable")[:QUEUE_CAPACITY]].mean()

    measured = {
        "open_leads": len(d), "future_rate": future.mean(), "mean_probability": p.mean(), "mean_fit": fit.mean(),
        "auc": roc_auc_score(future, p), "auc_fit": roc_auc_score(future, fit),
        "auc_reference": roc_auc_score(future, reference),
        "top_k": top_rate(p), "top_k_fit": top_rate(fit), "top_k_reference": top_rate(reference),
        "ece": expected_calibration_error(future, p),
    }
    print({k: round(float(v), 4) for k, v in measured.items()})
    assert measured["top_k"] >= 2 * measured["top_k_fit"], measured
    assert measured["top_k"] >= measured["top_k_reference"], measured
    assert measured["auc"] >= measured["auc_reference"], measured
    assert abs(measured["mean_probability"] / measured["future_rate"] - 1) <= 0.10, measured
    assert measured["ece"] <= 0.005, measured

    # The rep queues take leads that are alive now, not the old ones whose arrival looked good.
    routed = d["route"].isin(["sdr-europe", "sdr-americas", "sdr-global"]).to_numpy()
    assert routed.sum() == QUEUE_CAPACITY
    assert np.median(age[routed]) < np.median(age)


def test_campaign_expected_closes_against_the_truth(published):
    """Expected closes per campaign against the sum of the truth's probabilities, for campaigns of 500 leads or
    more. Mostly matured: within 10 % for at least 75 % of them (knowing every matured outcome gets about 80 %
    there, the noise floor). Fewer than half matured, where the lead model meets campaigns it has barely seen
    and early wins must be read against their exposure: median error at most 25 %, none off by 2x. The 90 %
    intervals must hold the closes the generator's future brings (most campaigns, not all: the factor on a
    campaign is estimated, and its leads' chances are not independent of its other leads')."""
    cfg, truth = published
    folder = read_latest(Home(cfg.home).campaign_reports)
    table = pd.read_parquet(folder / "campaign_quality.parquet").set_index("campaign")
    leads = pd.read_parquet(Home(cfg.home).canonical / "leads.parquet", columns=["lead_id", "campaign"])
    d = leads.merge(truth, left_on="lead_id", right_on="Lead ID")
    true = d.groupby("campaign")["true_probability"].sum()
    final = d.groupby("campaign")["won_within_horizon"].sum()
    big = table[table["leads"] >= 500]
    error = (big["expected_closes"] / true.reindex(big.index) - 1).abs()
    matured = big["matured_share"] >= 0.5
    print({"campaigns": len(big), "mostly_matured": int(matured.sum()),
           "within_10pct": round(float((error[matured] <= 0.10).mean()), 3),
           "young_median_error": round(float(error[~matured].median()), 3),
           "young_max_error": round(float(error[~matured].max()), 3)})
    assert matured.sum() >= 30 and (~matured).sum() >= 8
    assert (error[matured] <= 0.10).mean() >= 0.75, error[matured].sort_values().tail()
    assert error[~matured].median() <= 0.25, error[~matured].sort_values()
    ratio = big["expected_closes"] / true.reindex(big.index)
    assert ((ratio < 2) & (ratio > 0.5)).all(), ratio.sort_values()
    inside = (final.reindex(big.index) >= big["expected_closes_low"]) & (final.reindex(big.index) <= big["expected_closes_high"])
    assert inside.mean() >= 0.8, inside.mean()
    # Nothing lost: every lead belongs to one row, and the wins known so far add up.
    assert table["leads"].sum() == len(leads)
    assert table["closes_so_far"].sum() <= final.sum()
