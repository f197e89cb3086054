"""Train the close-probability models: time-forward split, LightGBM, calibration that follows drift, tier
cut-offs, test metrics.

Two models, one recipe (:func:`fit_recipe`):

- the ``fit`` model (:func:`train_model`): one row per mature lead at its arrival, label "won within the
  horizon of creation";
- the model of a win from now on (:func:`train_now_model`): landmark rows (each lead still open at each of
  ``label.landmarks_days``), label "won within the horizon after the landmark", rows weighted to undo the
  sampling of negatives.

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
    test_frame: pd.DataFrame = field(repr=False)  # the test rows with their calibrated probability
    single_feature: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # leakage-guard report
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # same test leads, same metrics
    baseline_probability: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # on test_frame's rows
    best_iteration: int = 0
    now: TrainResult | None = None  # the model of a win from now on, trained on landmark rows


def time_forward_split(frame: pd.DataFrame, valid_fraction: float, test_fraction: float,
                       column: str = "created_at") -> pd.Series:
    """Label rows train / valid / test by their moment: the test rows are the most recent ones."""
    order = frame[column].rank(method="first").to_numpy()
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


def train_model(fs: FeatureSet, cfg: Config, landmarks: FeatureSet | None = None) -> TrainResult:
    """The fit model (every mature lead at its arrival) and, given ``landmarks``, the model of a win from now on,
    which the registered model carries (``model.now``, ``result.now``)."""
    now = train_now_model(landmarks, cfg) if landmarks is not None else None
    frame = fs.frame.to_pandas()
    data = frame[frame["mature"] & frame["label"].notna()].copy()
    if len(data) < MIN_TRAIN_LEADS:
        raise DataError(
            f"only {len(data)} leads have a known outcome (mature: created at least label.horizon_days = "
            f"{cfg.label.horizon_days} days before as_of); at least {MIN_TRAIN_LEADS} are needed to train"
        )
    result = fit_recipe(data, fs, cfg, time_column=None if fs.mode == "snapshot" else "created_at",
                        now=now.model if now else None)
    result.now = now
    if now is not None:  # the fit beside it on the same landmark rows: what publishing the fit alone would say
        _fit_beside(now, frame, result.model.evaluated or result.model)
    log.info("train: %s training leads, %d trees, %s calibration; registered model: %s trees refit on all %s "
             "mature leads, with that calibration", f"{result.split_counts['train_leads']:,}",
             result.best_iteration, result.params["calibration"], result.params["final_rounds"],
             f"{result.split_counts['final_fit_leads']:,}")
    return result


def _fit_beside(now: TrainResult, frame: pd.DataFrame, fit_model: LeadModel) -> None:
    """The fit (chance at arrival, by the evaluated fit model, which never saw the newest outcomes) of each of
    the now-model's test rows, and its metrics against their label (a win within the horizon after the landmark)."""
    test = now.test_frame
    rows = frame.set_index("lead_id").loc[test["lead_id"].to_numpy()].reset_index()
    test["fit"] = fit_model.probability(rows)
    now.baselines["fit"] = classification_metrics(test["label"].to_numpy(), test["fit"].to_numpy(),
                                                  test["weight"].to_numpy(np.float64))


def train_now_model(fs: FeatureSet, cfg: Config) -> TrainResult:
    """The model of a win from now on: landmark rows (``features.build.build_landmarks``), split by landmark
    time, weighted."""
    data = fs.frame.to_pandas()
    if len(data) < MIN_TRAIN_LEADS or data["label"].sum() < 20:
        raise DataError(f"only {len(data):,} landmark rows ({int(data['label'].sum()):,} won within the horizon after "
                        "their landmark): too few to learn a win from now on; add history or lower label.horizon_days")
    # Tier cut-offs are set on leads as they arrive, so a tier means the same for both models: a lead that has
    # gone cold drops below the tiers of fresh ones.
    result = fit_recipe(data, fs, cfg, time_column="at", weight_column="weight",
                        tier_rows=data["landmark_days"].to_numpy() == 0, learning_rate=cfg.train.now_learning_rate)
    log.info("train: model of a win from now on: %s landmark rows (%s won), %d trees, %s calibration",
             f"{len(data):,}", f"{int(data['label'].sum()):,}", result.best_iteration, result.params["calibration"])
    return result


def lgb_params(cfg: Config) -> dict:
    tc = cfg.train
    return {
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


def fit_recipe(data: pd.DataFrame, fs: FeatureSet, cfg: Config, time_column: str | None,
               weight_column: str | None = None, tier_rows: np.ndarray | None = None,
               now: LeadModel | None = None, learning_rate: float | None = None) -> TrainResult:
    """Split, guard against leakage, fit, calibrate, evaluate and refit, for rows with a ``label`` (and, with
    ``weight_column``, a weight per row).

    - The evaluated model: trees on the oldest rows (``train``), early-stopped and calibrated on the next
      (``valid``), measured on the newest (``test``), which neither saw.
    - The registered model: the same recipe (rounds scaled to the data) refit on every row.
    """
    import lightgbm as lgb

    tc = cfg.train
    y_all = data["label"].astype(np.int64)
    w_all = data[weight_column].to_numpy(np.float64) if weight_column else np.ones(len(data))
    tier_rows = np.ones(len(data), bool) if tier_rows is None else tier_rows
    if time_column is None:
        split = stratified_split(y_all, tc.valid_fraction, tc.test_fraction, tc.seed)
    else:
        split = time_forward_split(data, tc.valid_fraction, tc.test_fraction, time_column)
    names = ("train", "valid", "test")
    mask = {name: (split == name).to_numpy() for name in names}
    parts = {name: data[mask[name]] for name in names}
    y = {name: y_all.to_numpy()[mask[name]] for name in names}
    w = {name: w_all[mask[name]] for name in names}
    for name in names:
        if len(np.unique(y[name])) < 2:
            raise DataError(f"the {name} slice has only one outcome; there are too few wins to train on this export")

    single = single_feature_report(parts["train"], y["train"], fs.categorical, fs.numeric, seed=tc.seed,
                                   weight=w["train"] if weight_column else None)
    check_leakage(single, cfg.features.max_single_auc, cfg.features.allow_leaky, fs.labels)

    params = lgb_params(cfg) | ({"learning_rate": learning_rate} if learning_rate else {})
    encoder = FeatureEncoder(fs.categorical, fs.numeric).fit(parts["train"])
    x = {name: encoder.transform(part) for name, part in parts.items()}
    dtrain = lgb.Dataset(x["train"], y["train"], weight=w["train"], categorical_feature=fs.categorical,
                         free_raw_data=False)
    dvalid = lgb.Dataset(x["valid"], y["valid"], weight=w["valid"], reference=dtrain)
    booster = lgb.train(params, dtrain, num_boost_round=tc.num_boost_round, valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(tc.early_stopping_rounds, verbose=False)])
    # Keep only the trees up to the best iteration, so the model predicts what was evaluated.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    raw = {name: booster.predict(x[name]) for name in ("valid", "test")}

    method = choose_calibration(raw["valid"], y["valid"], tc.seed, weight=w["valid"])
    calibrator = Calibrator(method).fit(raw["valid"], y["valid"], w["valid"])
    p_valid = calibrator.transform(raw["valid"])
    keep = tier_rows[mask["valid"]]
    evaluated = LeadModel(encoder, booster, calibrator,
                          tier_cutoffs(p_valid[keep], cfg.scoring.tier_shares, w["valid"][keep]), fs.labels)
    p_test = calibrator.transform(raw["test"])

    # The registered model: the evaluated recipe (features, parameters, rounds scaled to the rows, calibrator, tier
    # cut-offs) refit on every row. Without it, the newest 30 % of known outcomes (the validation and test rows)
    # would never reach the model in service, and campaigns that started in that time would be unknown to it
    # (calibrating a model fitted without the test rows on them instead leaves such campaigns at the average:
    # on 200,000 generator leads, the newest leads' mean probability 11 % below the truth rather than 5 %).
    final_encoder = FeatureEncoder(fs.categorical, fs.numeric).fit(data)
    rounds = max(1, round(booster.current_iteration() * len(data) / len(parts["train"])))
    final = lgb.train(params, lgb.Dataset(final_encoder.transform(data), y_all.to_numpy(), weight=w_all,
                                          categorical_feature=fs.categorical), num_boost_round=rounds)
    cutoffs = evaluated.tier_cutoffs
    reasons = ReasonBook(fs.categorical, fs.numeric, fs.labels, cfg.features.prior_strength,
                         definitions=fs.definitions).fit(data, y_all.to_numpy(), w_all)
    recent = pd.concat([parts["valid"], parts["test"]])
    p_recent = LeadModel(final_encoder, final, calibrator, cutoffs).probability(recent)
    snapshot = time_column is None
    # The evaluated model travels along: the next training run's gate compares recipes fitted on similar
    # history (this one against the next one's evaluated model) on leads neither has seen.
    model = LeadModel(final_encoder, final, calibrator, cutoffs, fs.labels, reasons=reasons,
                      attribution=PathAttribution(final).fit(),
                      reference=DriftReference(fs.categorical, fs.numeric).fit(recent, p_recent),
                      trained_through=None if snapshot else pd.Timestamp(data[time_column].max()),
                      evaluated=evaluated,
                      evaluated_through=None if snapshot else pd.Timestamp(
                          pd.concat([parts["train"], parts["valid"]])[time_column].max()),
                      now=now)

    weighted = w["test"] if weight_column else None
    metrics = classification_metrics(y["test"], p_test, weighted)
    metrics["valid_roc_auc"] = classification_metrics(y["valid"], p_valid, w["valid"] if weight_column else None)["roc_auc"]
    tiers = evaluated.tier(p_test)
    wins = y["test"] == 1
    metrics["tier_a_win_share"] = float(np.average(tiers[wins] == "A", weights=w["test"][wins])) if wins.any() else 0.0

    baselines, baseline_probability = {}, {}
    if not weight_column:  # the baselines know no weights; the fit model is the one they are there to check
        for name, baseline in (("logistic", LogisticBaseline(fs.categorical, fs.numeric, tc.seed)),
                               ("naive_bayes", NaiveBayesBaseline(fs.categorical, fs.numeric))):
            baseline.fit(parts["train"], y["train"])
            p_base = baseline.predict_proba(parts["test"])
            baselines[name] = _evaluate(p_base, y["test"], baseline.predict_proba(parts["valid"]),
                                        cfg.scoring.tier_shares[0])
            baseline_probability[name] = p_base

    extra = [c for c in ("created_at", "at", "landmark_days", weight_column) if c and c in parts["test"].columns]
    test_frame = parts["test"][["lead_id", *extra, "label"]].copy()
    test_frame["tier"] = tiers
    test_frame["probability"] = p_test
    unit = "rows" if weight_column else "leads"
    counts = {f"{k}_{unit}": len(v) for k, v in parts.items()} | {f"final_fit_{unit}": len(data)}
    counts |= {f"{k}_wins": int(y[k].sum()) for k in parts}
    params_out = {**params, "split": "stratified random" if snapshot else "time-forward",
                  "calibration": method, "best_iteration": booster.current_iteration(), "final_rounds": rounds,
                  "n_features": len(encoder.features_), "tier_cutoffs": [round(c, 6) for c in cutoffs]}
    return TrainResult(model=model, metrics=metrics, params=params_out, split_counts=counts,
                       test_frame=test_frame, single_feature=single, baselines=baselines,
                       baseline_probability=baseline_probability, best_iteration=booster.current_iteration())


def _evaluate(p_test: np.ndarray, y_test: np.ndarray, p_valid: np.ndarray, tier_a_share: float) -> dict[str, float]:
    """Test metrics of a baseline; its tier A cut-off is set on its own validation probabilities, like the model's."""
    metrics = classification_metrics(y_test, p_test)
    cutoff = float(np.quantile(p_valid, 1 - tier_a_share))
    wins = y_test == 1
    metrics["tier_a_win_share"] = float((p_test[wins] >= cutoff).mean()) if wins.any() else 0.0
    return metrics


def choose_calibration(raw: np.ndarray, y: np.ndarray, seed: int, folds: int = 3,
                       weight: np.ndarray | None = None) -> str:
    """Isotonic or sigmoid, whichever has the lower out-of-fold log loss on the validation slice."""
    from sklearn.metrics import log_loss

    w = np.ones(len(raw)) if weight is None else weight
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(raw))
    losses = {}
    for method in ("isotonic", "sigmoid"):
        p = np.empty(len(raw))
        for k in range(folds):
            fit, held = fold != k, fold == k
            if len(np.unique(y[fit])) < 2:
                return "sigmoid"
            p[held] = Calibrator(method).fit(raw[fit], y[fit], w[fit]).transform(raw[held])
        losses[method] = log_loss(y, p, labels=[0, 1], sample_weight=w)
    return min(losses, key=losses.get)


def tier_cutoffs(p: np.ndarray, shares: tuple[float, float, float], weight: np.ndarray | None = None) -> list[float]:
    """Probability thresholds so that A, B and C hold the configured shares of the rows (weighted)."""
    cumulative = np.cumsum(shares)
    if weight is None:
        return [float(np.quantile(p, 1 - c)) for c in cumulative]
    order = np.argsort(p, kind="stable")
    cw = np.cumsum(weight[order]) / weight.sum()
    return [float(p[order][min(np.searchsorted(cw, 1 - c), len(p) - 1)]) for c in cumulative]
