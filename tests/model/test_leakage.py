"""The leakage guard trips on columns set after the outcome, and only on those."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_config, xeducation_config

from features.build import build_features
from ingest.canonical import ingest
from models.leakage import LeakageError, check_leakage, single_feature_report
from models.train import train_model

pytestmark = pytest.mark.slow

POST_CONTACT = ["Tags", "Lead Quality", "Last Activity", "Last Notable Activity", "Lead Profile", "Do Not Email"]


def _features(cfg):
    result = ingest(cfg)
    return build_features(result.tables, cfg, result.as_of)


def test_generator_status_column_stops_training(crm_small, tmp_path):
    text = '\n[features]\nallow_leaky = []\n'
    cfg = make_config(crm_small, tmp_path / "home", text)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"leads": cfg.data.leads.model_copy(
        update={"categorical": (*cfg.data.leads.categorical, "Lead Status")})})})
    fs = _features(cfg)
    with pytest.raises(LeakageError) as info:
        train_model(fs, cfg)
    message = str(info.value)
    assert "'Lead Status'" in message and "ROC AUC" in message and "features.allow_leaky" in message
    assert info.value.exit_code == 2
    # Listed as allowed, the same column trains (and the model looks too good to be true).
    allowed = cfg.model_copy(update={"features": cfg.features.model_copy(update={"allow_leaky": ("Lead Status",)})})
    assert train_model(fs, allowed).metrics["roc_auc"] > 0.9


def test_honest_features_pass_and_the_strongest_are_reported(medium_run):
    _, _, fs, trained = medium_run
    report = trained.single_feature
    assert set(report["feature"]) == set(fs.features)
    assert report["auc"].is_monotonic_decreasing
    assert report["auc"].max() < 0.95 and (report["outcome_like_share"] < 0.2).all()


def test_tags_is_caught_on_x_education():
    cfg = xeducation_config()
    leads = cfg.data.leads.model_copy(update={"categorical": (*cfg.data.leads.categorical, *POST_CONTACT)})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"leads": leads})})
    fs = _features(cfg)
    with pytest.raises(LeakageError, match=r"'Tags' \(ROC AUC 0\.9\d\d\) has values that are nearly always won"):
        train_model(fs, cfg)


def test_many_valued_honest_column_is_not_flagged():
    """An id-like column with no signal must not look predictive: the encoding is out of fold."""
    rng = np.random.default_rng(0)
    n = 20_000
    frame = pd.DataFrame({"id_like": [f"v{i}" for i in rng.integers(0, 5_000, n)], "noise": rng.normal(size=n)})
    y = (rng.random(n) < 0.3).astype(float)
    report = single_feature_report(frame, y, ["id_like"], ["noise"], seed=1)
    assert report["auc"].max() < 0.55
    check_leakage(report, 0.95, (), {})


def test_well_known_post_outcome_names_are_named():
    from leadscore.contract import post_outcome_columns

    named = post_outcome_columns(["Country", "Lead Quality", "Tags", "duration", "Total call duration (s)",
                                  "Lead Status Reason", "TotalVisits", "pdays", "Lead Source", "Job Level"],
                                 allow=("Tags",))
    assert named == {"Lead Quality": "lead quality", "duration": "duration",
                     "Total call duration (s)": "call duration", "Lead Status Reason": "lead status"}
