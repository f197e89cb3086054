"""Exports harder than the default generator: base rates that rise or fall several-fold over the two years,
with a strong season, and a few hundred wins. On the falling one the booster alone is the worst candidate on
the validation leads (it learns the old level from features that tell time); whatever wins, the registered
model must rank the newest leads at least as well as the best baseline, and the run says what it chose."""

import logging
import re

import pytest

from conftest import make_config
from flows import steps
from ingest.synthetic import generate_crm, write_crm

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("leads, drift, season, seed", [(8_000, 1.5, 0.4, 31), (16_000, -1.5, 0.5, 36)],
                         ids=["rising", "falling"])
def test_the_registered_model_is_not_worse_than_the_best_baseline_on_the_newest_leads(leads, drift, season, seed,
                                                                                      tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="leadscore")
    write_crm(generate_crm(leads, seed=seed, drift_per_year=drift, season=season), tmp_path / "crm")
    cfg = make_config(tmp_path / "crm", tmp_path / "home")
    steps.ingest_step(cfg, "drift")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "drift")
    m = trained["metrics"]
    best = max(m["baseline_logistic_roc_auc"], m["baseline_naive_bayes_roc_auc"])
    print(f"{drift:+} a year: registered {m['roc_auc']:.4f}, best baseline {best:.4f}, "
          f"{trained['split']['test_wins']} test wins")
    assert trained["split"]["test_wins"] >= 70  # enough for the comparison to mean something
    assert m["roc_auc"] >= best - 0.005, (m["roc_auc"], best)
    assert trained["promoted"], trained["gate_reasons"]
    said = re.search(r"registered the (.+?): log loss [\d.]+ below the .+? on the [\d,]+ validation leads \(calibrated "
                     r"out of fold; (.+?)\)", caplog.text)
    assert said, caplog.text[-3000:]
    losses = dict(re.findall(r"(LightGBM booster|logistic regression|naive Bayes|blend of booster and logistic "
                             r"regression) ([\d.]+)", said.group(2)))
    assert len(losses) == 4 and min(losses, key=lambda k: float(losses[k])) in said.group(1)
    if drift < 0:
        assert float(losses["LightGBM booster"]) > min(float(v) for v in losses.values())
    assert "features that may only tell time, validated forward" in caplog.text
