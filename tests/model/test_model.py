"""Model behaviour on generator data, checked against the known truth."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models.lead_model import score_from_probability
from models.metrics import expected_calibration_error
from models.train import tier_cutoffs, time_forward_split

pytestmark = pytest.mark.slow


def _with_truth(trained, crm):
    truth = pd.read_csv(crm / "truth.csv")
    return trained.test_frame.merge(truth, left_on="lead_id", right_on="Lead ID", validate="one_to_one")


def test_model_ranks_close_to_the_truth(medium_run, crm_medium):
    cfg, _, _, trained = medium_run
    tf = _with_truth(trained, crm_medium)
    auc_model = roc_auc_score(tf["label"], tf["probability"])
    auc_truth = roc_auc_score(tf["label"], tf["true_probability"])
    # Far better than chance, and not far from the best any model could do on these leads.
    assert auc_model > 0.70
    assert auc_model > auc_truth - 0.04, (auc_model, auc_truth)
    assert np.corrcoef(tf["probability"], tf["true_probability"])[0, 1] > 0.75
    assert trained.metrics["roc_auc"] == auc_model


def test_probabilities_are_calibrated_on_recent_leads(medium_run):
    _, _, _, trained = medium_run
    tf = trained.test_frame
    assert expected_calibration_error(tf["label"].to_numpy(), tf["probability"].to_numpy()) < 0.04
    assert abs(tf["probability"].mean() - tf["label"].mean()) < 0.03


def test_test_leads_are_the_most_recent(medium_run):
    _, _, fs, trained = medium_run
    frame = fs.frame.to_pandas()
    mature = frame[frame["mature"]]
    test_ids = set(trained.test_frame["lead_id"])
    assert mature[mature["lead_id"].isin(test_ids)]["created_at"].min() >= mature[~mature["lead_id"].isin(test_ids)]["created_at"].max()
    assert trained.split_counts["test_leads"] == len(test_ids)


def test_split_fractions_and_tier_cutoffs():
    frame = pd.DataFrame({"created_at": pd.date_range("2025-01-01", periods=1000, freq="h", tz="UTC")})
    split = time_forward_split(frame, 0.2, 0.1)
    assert split.value_counts().to_dict() == {"train": 700, "valid": 200, "test": 100}
    p = np.linspace(0, 1, 10_001)
    a, b, c = tier_cutoffs(p, (0.1, 0.2, 0.3))
    shares = [(p >= cut).mean() for cut in (a, b, c)]
    assert shares == pytest.approx([0.1, 0.3, 0.6], abs=2e-4)


def test_tiers_follow_cutoffs_and_scores_stay_in_range(medium_run):
    _, _, _, trained = medium_run
    model = trained.model
    a, b, c = model.tier_cutoffs
    p = np.array([0.999, a, (a + b) / 2, b, c, c - 1e-9, 0.0])
    assert model.tier(p).tolist() == ["A", "A", "B", "B", "C", "D", "D"]
    assert score_from_probability(np.array([0.0, 0.004, 0.2, 0.996, 1.0])).tolist() == [1, 1, 20, 99, 99]


def test_a_hotter_lead_scores_higher(medium_run):
    """Behaviour: a demo request and recent web visits before sign-up raise the probability."""
    _, _, fs, trained = medium_run
    frame = fs.frame.to_pandas()
    cold = frame[frame["mature"]].head(500).copy()
    hot = cold.copy()
    for w in (7, 30, 90):
        hot[f"act_demo_request_{w}d"] = 1.0
        hot[f"act_web_visit_{w}d"] = cold[f"act_web_visit_{w}d"] + 4
        hot[f"act_any_{w}d"] = cold[f"act_any_{w}d"] + 5
    hot["days_since_last_activity"] = 1.0
    p_cold, p_hot = trained.model.probability(cold), trained.model.probability(hot)
    assert (p_hot >= p_cold - 1e-9).mean() > 0.95
    assert p_hot.mean() > p_cold.mean() * 1.5
