"""Bagged boosters (models.bags): a lead's bag depends on its id alone, the merged model predicts the mean of its
boosters' log-odds, and new leads change only the boosters of their own bags. And the calibration method, which
stays the model in service's while the difference is within noise."""

import pickle
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.bags import MIN_BAG_ROWS, averaged, bag_count, bag_of, bag_rows
from models.encoding import FeatureEncoder
from models.train import _boost, oof_losses

TRAIN = SimpleNamespace(num_boost_round=200, early_stopping_rounds=20)
PARAMS = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 20, "num_threads": 1, "verbose": -1,
          "deterministic": True, "force_row_wise": True, "seed": 3}


def _leads(n: int, seed: int, prefix: str = "L") -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"lead_id": [f"{prefix}{i:06d}" for i in range(n)], "x": rng.normal(0, 1, n),
                          "z": rng.normal(0, 1, n), "kind": rng.choice(list("abcdef"), n)})
    logit = -1.5 + frame["x"] + 0.8 * np.sin(2 * frame["z"]) + (frame["kind"] == "c") * 1.2
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_a_leads_bag_depends_on_its_id_alone():
    frame, _ = _leads(5000, 1)
    alone = bag_of(frame["lead_id"], 8)
    more = bag_of(pd.concat([frame["lead_id"], pd.Series(["NEW-1", "NEW-2"]), frame["lead_id"].iloc[::-1]]), 8)
    assert (more[:5000] == alone).all() and (more[5002:] == alone[::-1]).all()
    assert set(np.unique(alone)) == set(range(8)) and np.bincount(alone).min() > 500
    assert (bag_of(frame["lead_id"], 1) == 0).all() and bag_rows(frame, 1) == [slice(None)]
    assert np.array_equal(np.sort(np.concatenate(bag_rows(frame, 8))), np.arange(5000))
    assert bag_count(3 * MIN_BAG_ROWS + 1, 8) == 3 and bag_count(100, 8) == 1 and bag_count(10**7, 8) == 8


def test_the_merged_booster_predicts_the_mean_log_odds_of_its_boosters():
    frame, y = _leads(6000, 2)
    encoder = FeatureEncoder(["kind"], ["x", "z"]).fit(frame)
    x = encoder.transform(frame)
    bags = bag_of(frame["lead_id"], 3)
    members = [lgb.train(PARAMS, lgb.Dataset(x[bags == b], y[bags == b], categorical_feature=["kind"]),
                         num_boost_round=10 + 7 * b) for b in range(3)]
    merged = pickle.loads(pickle.dumps(averaged(members)))
    mean = np.mean([m.predict(x, raw_score=True) for m in members], axis=0)
    assert np.abs(merged.predict(x, raw_score=True) - mean).max() < 1e-12
    assert np.abs(merged.predict(x) - 1 / (1 + np.exp(-mean))).max() < 1e-12
    assert merged.current_iteration() == sum(m.current_iteration() for m in members) == 51
    assert merged.predict(x, pred_leaf=True).shape == (len(x), 51)
    assert len(merged.dump_model()["tree_info"]) == 51
    assert averaged(members[:1]) is members[0]
    other = lgb.train(PARAMS, lgb.Dataset(x[["x", "z"]], y), num_boost_round=3)  # other features: refused
    with pytest.raises(ValueError, match="feature_names"):
        averaged([members[0], other])


def test_new_leads_change_only_the_boosters_of_their_bags():
    frame, y = _leads(12000, 4)
    extra, y_extra = _leads(3, 5, prefix="NEW-")
    valid, y_valid = _leads(3000, 6, prefix="V")
    bags = 4
    touched = set(bag_of(extra["lead_id"], bags))
    assert len(touched) < bags  # so that some boosters must stay as they were

    def members(train, labels):
        encoder = FeatureEncoder(["kind"], ["x", "z"]).fit(frame)  # one encoder: the bags' trees alone differ
        parts, ys = {"train": train.reset_index(drop=True), "valid": valid}, {"train": labels, "valid": y_valid}
        w = {"train": np.ones(len(train)), "valid": np.ones(len(valid))}
        return [m.model_to_string() for m in _boost(encoder, parts, ys, w, PARAMS, TRAIN, bags=bags)]

    before = members(frame, y)
    after = members(pd.concat([frame, extra]), np.concatenate([y, y_extra]))
    for b in range(bags):
        assert (before[b] == after[b]) is (b not in touched)


def _calibration_rows(jump: float):
    """Wins at a known chance, and a raw score that jumps at a chance of 0.3 (monotone: isotonic maps it back; a
    sigmoid of the raw log-odds cannot, the less the larger ``jump``)."""
    rng = np.random.default_rng(11)
    truth = rng.uniform(0.02, 0.6, 6000)
    raw = np.where(truth < 0.3, truth, truth + jump) / (1 + jump)
    return raw, (rng.random(len(truth)) < truth).astype(int)


def test_within_noise_the_calibration_method_stays():
    raw, y = _calibration_rows(4.0)  # isotonic better, within noise
    first = oof_losses(raw, y, seed=1)
    assert first[0] == "isotonic"  # a first model: the lower loss
    kept = oof_losses(raw, y, seed=1, before="sigmoid")
    assert kept[0] == "sigmoid" and kept[1].mean() > first[1].mean()
    assert oof_losses(raw, y, seed=1, before="isotonic")[0] == "isotonic"


def test_beyond_noise_the_better_method_wins():
    raw, y = _calibration_rows(64.0)
    assert oof_losses(raw, y, seed=1, before="sigmoid")[0] == "isotonic"
    raw, y = _calibration_rows(0.0)  # calibrated already
    assert oof_losses(raw, y, seed=1, before="isotonic")[0] == "sigmoid"


def test_the_model_of_a_win_from_now_on_trains_and_refits_bag_by_bag(monkeypatch):
    """``train.bags`` through the whole recipe: one booster per bag early-stopped on the oldest rows, each refit
    on its bag's share of every row, merged; the registered model predicts what its merged trees say."""
    import models.bags
    from leadscore.config import parse_config
    from leadscore.contract import FeatureSet
    from models.train import fit_recipe

    monkeypatch.setattr(models.bags, "MIN_BAG_ROWS", 2_000)  # bags at a size a unit test trains quickly
    frame, y = _leads(12_000, 7)
    frame["label"] = y
    frame["weight"] = 1.0
    frame["at"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(frame)) * 600, unit="s")
    fs = FeatureSet(frame=None, categorical=["kind"], numeric=["x", "z"])
    cfg = parse_config('[data.leads]\npath = "l.csv"\nid = "id"\ncreated_at = "c"\n[data.outcomes]\npath = "o.csv"\n'
                       'lead_id = "id"\nstage = "s"\noccurred_at = "t"\n[label]\nwon_stages = ["Won"]\n'
                       "[train]\nnum_threads = 1\nbags = 3\n", Path("leadscore.toml"))
    one = fit_recipe(frame, fs, cfg, time_column="at", weight_column="weight", bags=1)
    three = fit_recipe(frame, fs, cfg, time_column="at", weight_column="weight", bags=cfg.train.bags)
    assert one.params["bags"] == 1 and three.params["bags"] == 3
    booster = three.model.booster
    assert booster.current_iteration() == three.params["final_rounds"] > one.params["final_rounds"]
    x = three.model.encoder.transform(frame)
    assert np.allclose(three.model.probability(frame), three.model.calibrator.transform(booster.predict(x)))
    assert three.metrics["roc_auc"] > 0.7 and abs(three.metrics["roc_auc"] - one.metrics["roc_auc"]) < 0.03
