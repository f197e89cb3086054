"""Train the close-probability model: time-forward split, LightGBM, calibration, tier cut-offs, test metrics.

Knows frames and models, not files or MLflow (see ``models.registry``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.config import Config
from leadscore.contract import FeatureSet
from leadscore.errors import DataError
from models.baselines import LogisticBaseline, NaiveBayesBaseline
from models.drift import DriftReference
from models.encoding import FeatureEncoder
from models.explain import PathAttribution, ReasonBook
from models.lead_model import Calibrator, LeadModel
from models.leakage import check_leakage, single_feature_report
from models.metrics import classification_metrics

log = logging.getLogger("leadscore")

MIN_TRAIN_LEADS = 200


@dataclass
class TrainResult:
    model: LeadModel
    metrics: dict[str, float]
    params: dict[str, object]
    split_counts: dict[str, int]
    test_frame: pd.DataFrame = field(repr=False)  # the test leads with their calibrated probability
    single_feature: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # leakage-guard report
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # same test leads, same metrics
    baseline_probability: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # on test_frame's rows
    best_iteration: int = 0


def time_forward_split(frame: pd.DataFrame, valid_fraction: float, test_fraction: float) -> pd.Series:
    """Label mature leads train / valid / test by arrival order: the test leads are the most recent ones."""
    order = frame["created_at"].rank(method="first").to_numpy()
    n = len(frame)
    q = order / n
    part = np.where(q > 1 - test_fraction, "test", np.where(q > 1 - test_fraction - valid_fraction, "valid", "train"))
    return pd.Series(part, index=frame.index, name="split")


def stratified_split(y: pd.Series, valid_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Snapshot exports have no time: a random split that keeps the win rate equal in all three parts."""
    rng = np.random.default_rng(seed)
    part = np.empty(len(y), dtype=object)
    values = y.to_numpy()
    for cls in np.unique(values):
        idx = rng.permutation(np.flatnonzero(values == cls))
        n_test, n_valid = round(len(idx) * test_fraction), round(len(idx) * valid_fraction)
        part[idx[:n_test]] = "test"
        part[idx[n_test:n_test + n_valid]] = "valid"
        part[idx[n_test + n_valid:]] = "train"
    return pd.Series(part, index=y.index, name="split")


def train_model(fs: FeatureSet, cfg: Config) -> TrainResult:
    import lightgbm as lgb

    tc = cfg.train
    frame = fs.frame.to_pandas()
    data = frame[frame["mature"] & frame["label"].notna()].copy()
    if len(data) < MIN_TRAIN_LEADS:
        raise DataError(
            f"only {len(data)} leads have a known outcome (mature: created at least label.horizon_days = "
            f"{cfg.label.horizon_days} days before as_of); at least {MIN_TRAIN_LEADS} are needed to train"
        )
    y_all = data["label"].astype(np.int64)
    if fs.mode == "snapshot":
        split = stratified_split(y_all, tc.valid_fraction, tc.test_fraction, tc.seed)
    else:
        split = time_forward_split(data, tc.valid_fraction, tc.test_fraction)
    parts = {name: data[split == name] for name in ("train", "valid", "test")}
    for name, part in parts.items():
        if part["label"].nunique() < 2:
            raise DataError(f"the {name} slice has only one outcome; there are too few wins to train on this export")

    single = single_feature_report(parts["train"], y_all[split == "train"].to_numpy(), fs.categorical, fs.numeric,
                                   seed=tc.seed)
    check_leakage(single, cfg.features.max_single_auc, cfg.features.allow_leaky, fs.labels)

    encoder = FeatureEncoder(fs.categorical, fs.numeric).fit(parts["train"])
    x = {name: encoder.transform(part) for name, part in parts.items()}
    y = {name: y_all[split == name].to_numpy() for name in parts}

    params = {
        "objective": "binary",
        "learning_rate": tc.learning_rate,
        "num_leaves": tc.num_leaves,
        "min_data_in_leaf": tc.min_child_samples,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 20,
        "max_cat_to_onehot": 8,
        "seed": tc.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": tc.num_threads,
        "verbose": -1,
    }
    dtrain = lgb.Dataset(x["train"], y["train"], categorical_feature=fs.categorical, free_raw_data=False)
    dvalid = lgb.Dataset(x["valid"], y["valid"], reference=dtrain)
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=tc.num_boost_round,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(tc.early_stopping_rounds, verbose=False)],
    )
    # Keep only the trees up to the best iteration, so the logged model predicts what was evaluated.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    raw_valid = booster.predict(x["valid"])
    method = choose_calibration(raw_valid, y["valid"], tc.seed)
    calibrator = Calibrator(method).fit(raw_valid, y["valid"])
    p_valid = calibrator.transform(raw_valid)
    cutoffs = tier_cutoffs(p_valid, cfg.scoring.tier_shares)
    p_test = calibrator.transform(booster.predict(x["test"]))
    evaluated = LeadModel(encoder, booster, calibrator, cutoffs, fs.labels)

    # The registered model: the evaluated recipe (features, parameters, rounds scaled to the data, calibrator,
    # tier cut-offs) refit on every mature lead. Without it, the newest 30 % of known outcomes (the validation
    # and test leads) would never reach the model in service, and campaigns that started in that time would be
    # unknown to it. On the demo, the refit halves the calibration error against the true probabilities of the
    # leads it then scores (the immature ones).
    final_encoder = FeatureEncoder(fs.categorical, fs.numeric).fit(data)
    rounds = max(1, round(booster.current_iteration() * len(data) / len(parts["train"])))
    final = lgb.train(params, lgb.Dataset(final_encoder.transform(data), y_all.to_numpy(),
                                          categorical_feature=fs.categorical), num_boost_round=rounds)
    reasons = ReasonBook(fs.categorical, fs.numeric, fs.labels, cfg.features.prior_strength).fit(data, y_all.to_numpy())
    recent = pd.concat([parts["valid"], parts["test"]])
    p_recent = LeadModel(final_encoder, final, calibrator, cutoffs).probability(recent)
    snapshot = fs.mode == "snapshot"
    # The evaluated model travels along: the next training run's gate compares recipes fitted on similar
    # history (this one against the next one's evaluated model) on leads neither has seen.
    model = LeadModel(final_encoder, final, calibrator, cutoffs, fs.labels, reasons=reasons,
                      attribution=PathAttribution(final).fit(),
                      reference=DriftReference(fs.categorical, fs.numeric).fit(recent, p_recent),
                      trained_through=None if snapshot else pd.Timestamp(data["created_at"].max()),
                      evaluated=evaluated,
                      evaluated_through=None if snapshot else pd.Timestamp(
                          pd.concat([parts["train"], parts["valid"]])["created_at"].max()))

    metrics = classification_metrics(y["test"], p_test)
    metrics["valid_roc_auc"] = classification_metrics(y["valid"], p_valid)["roc_auc"]
    tiers = evaluated.tier(p_test)
    wins = y["test"] == 1
    metrics["tier_a_win_share"] = float((tiers[wins] == "A").mean()) if wins.any() else 0.0

    baselines, baseline_probability = {}, {}
    for name, baseline in (("logistic", LogisticBaseline(fs.categorical, fs.numeric, tc.seed)),
                           ("naive_bayes", NaiveBayesBaseline(fs.categorical, fs.numeric))):
        baseline.fit(parts["train"], y["train"])
        p_base = baseline.predict_proba(parts["test"])
        baselines[name] = _evaluate(p_base, y["test"], baseline.predict_proba(parts["valid"]), cfg.scoring.tier_shares[0])
        baseline_probability[name] = p_base

    test_frame = parts["test"][["lead_id", "created_at", "label"]].copy()
    test_frame["tier"] = tiers
    test_frame["probability"] = p_test
    counts = {f"{k}_leads": len(v) for k, v in parts.items()} | {"final_fit_leads": len(data)}
    counts |= {f"{k}_wins": int(y[k].sum()) for k in parts}
    params_out = {**params, "split": "stratified random" if fs.mode == "snapshot" else "time-forward",
                  "calibration": method, "best_iteration": booster.current_iteration(), "final_rounds": rounds,
                  "n_features": len(encoder.features_), "tier_cutoffs": [round(c, 6) for c in cutoffs]}
    log.info("train: %s training leads, %d trees, %s calibration; registered model refit on all %s mature leads "
             "(%d trees)", f"{len(parts['train']):,}", booster.current_iteration(), method, f"{len(data):,}", rounds)
    return TrainResult(model=model, metrics=metrics, params=params_out, split_counts=counts,
                       test_frame=test_frame, single_feature=single, baselines=baselines,
                       baseline_probability=baseline_probability,
                       best_iteration=booster.current_iteration())


def _evaluate(p_test: np.ndarray, y_test: np.ndarray, p_valid: np.ndarray, tier_a_share: float) -> dict[str, float]:
    """Test metrics of a baseline; its tier A cut-off is set on its own validation probabilities, like the model's."""
    metrics = classification_metrics(y_test, p_test)
    cutoff = float(np.quantile(p_valid, 1 - tier_a_share))
    wins = y_test == 1
    metrics["tier_a_win_share"] = float((p_test[wins] >= cutoff).mean()) if wins.any() else 0.0
    return metrics


def choose_calibration(raw: np.ndarray, y: np.ndarray, seed: int, folds: int = 3) -> str:
    """Isotonic or sigmoid, whichever has the lower out-of-fold log loss on the validation slice."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(raw))
    losses = {}
    for method in ("isotonic", "sigmoid"):
        p = np.empty(len(raw))
        for k in range(folds):
            fit, held = fold != k, fold == k
            if len(np.unique(y[fit])) < 2:
                return "sigmoid"
            p[held] = Calibrator(method).fit(raw[fit], y[fit]).transform(raw[held])
        losses[method] = log_loss(y, p, labels=[0, 1])
    return min(losses, key=losses.get)


def tier_cutoffs(p: np.ndarray, shares: tuple[float, float, float]) -> list[float]:
    """Probability thresholds so that A, B and C hold the configured shares of the validation leads."""
    cumulative = np.cumsum(shares)
    return [float(np.quantile(p, 1 - c)) for c in cumulative]
