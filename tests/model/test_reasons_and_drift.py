"""Reasons against the model's contributions, drift against its reference, schema drift."""

import numpy as np
import pytest

from leadscore.errors import DataError
from models.explain import top_reasons
from serving.scorer import LeadScorer

pytestmark = pytest.mark.slow


def test_contributions_add_up_and_reasons_agree_in_sign(medium_run):
    from models.train import train_model

    cfg, _, fs, _ = medium_run
    # The booster's reasons (the registered model may be a simpler candidate).
    booster_only = cfg.model_copy(update={"train": cfg.train.model_copy(update={"candidates": ("lightgbm",)})})
    model = train_model(fs, booster_only).model
    assert model.kind == "lightgbm"
    frame = fs.frame.to_pandas().head(3000)
    x = model.encoder.transform(frame)
    contrib = model.attribution.contributions(x)
    raw = model.booster.predict(x, raw_score=True)
    np.testing.assert_allclose(model.attribution.bias_ + contrib.sum(axis=1), raw, atol=1e-9)
    # Path attribution agrees in sign with LightGBM's exact TreeSHAP wherever an effect is worth a reason.
    shap = model.booster.predict(x, pred_contrib=True)[:, :-1]
    strong = np.abs(shap) > 0.05
    assert (np.sign(shap[strong]) == np.sign(contrib[strong])).mean() > 0.97

    reasons = top_reasons(contrib, frame, model.features, model.reasons)
    book = model.reasons
    for i in range(200):
        parts = [r for r in reasons[i].split("; ") if r]
        plus = [r[2:] for r in parts if r.startswith("+ ")]
        minus = [r[2:] for r in parts if r.startswith("- ")]
        assert len(plus) <= 3 and len(minus) <= 3
        order = np.argsort(-contrib[i])
        if plus:  # the strongest reason for the lead is its largest positive contribution, in words
            f = model.features[order[0]]
            assert contrib[i, order[0]] > 0
            assert plus[0] == book.texts(f, frame[f].iloc[[i]], 1)[0]
        if minus:
            f = model.features[order[-1]]
            assert contrib[i, order[-1]] < 0
            assert minus[0] == book.texts(f, frame[f].iloc[[i]], -1)[0]


def test_drift_fires_on_a_shifted_input_and_not_on_the_reference(medium_run):
    _, _, fs, trained = medium_run
    scorer = LeadScorer(trained.model, "1")
    frame = fs.frame.to_pandas()
    recent = frame[frame["mature"]].sort_values("created_at").tail(8000)
    steady = scorer.drift(recent, scorer.model.probability(recent))
    assert max(steady[f] for f in ("employees", "country", "act_any_30d")) < 0.1
    shifted = recent.assign(employees=recent["employees"] * 20, country="India")
    psi = scorer.drift(shifted, scorer.model.probability(shifted))
    assert psi["employees"] > 0.2 and psi["country"] > 0.2
    assert psi["score"] > steady["score"]


def test_schema_drift_stops_scoring_with_exit_code_2(medium_run):
    _, _, fs, trained = medium_run
    scorer = LeadScorer(trained.model, "1")
    with pytest.raises(DataError, match="schema drift.*employees") as err:
        scorer.check_schema(fs.categorical, [c for c in fs.numeric if c != "employees"])
    assert err.value.exit_code == 2
    with pytest.raises(DataError, match="changed type"):
        scorer.check_schema([*fs.categorical, "employees"], [c for c in fs.numeric if c != "employees"])
