"""Train the close-probability models: time-forward split, a model chosen on the validation leads (LightGBM, a
logistic regression, naive Bayes or a blend), calibration, tier cut-offs, test metrics.

Two models, one recipe (:func:`fit_recipe`):

- the ``fit`` model (:func:`train_model`): one row per mature lead at its arrival, label "won within the
  horizon of creation";
- the model of a win from now on (:func:`train_now_model`): landmark rows (each lead still open at an age
  drawn in the span ending at each of ``label.landmarks_days``), label "won within the horizon after the
  landmark", rows weighted to undo the sampling of negatives.

Knows frames and models, not files or MLflow (see ``models.registry``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.definitions import time_groups
from leadscore.cluster import again_if_lost
from leadscore.config import Config
from leadscore.contract import FeatureSet, post_outcome_columns
from leadscore.errors import DataError
from models.bags import averaged, bag_count, bag_rows
from models.baselines import LogisticBaseline, NaiveBayesBaseline
from models.drift import DriftReference
from models.early_outcomes import OutcomeFactors
from models.encoding import FeatureEncoder
from models.explain import PathAttribution, ReasonBook
from models.lead_model import Calibrator, LeadModel, blend
from models.leakage import check_leakage, single_feature_report
from models.metrics import classification_metrics

log = logging.getLogger("leadscore")

# The simple models that are baselines of the fit model and candidates beside the booster, preferred to it
# within noise (:func:`pick_candidate`).
SIMPLE = {"logistic": LogisticBaseline,
          "naive_bayes": lambda categorical, numeric, seed: NaiveBayesBaseline(categorical, numeric)}


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


def train_model(fs: FeatureSet, cfg: Config, landmarks: FeatureSet | None = None,
                as_of: pd.Timestamp | None = None, client=None, in_service: LeadModel | None = None) -> TrainResult:
    """The fit model (every mature lead at its arrival) and, given ``landmarks``, the model of a win from now on,
    which the registered model carries (``model.now``, ``result.now``). Given ``as_of`` (the features' moment),
    the registered model also carries each campaign's outcome factor from the early wins of the leads that had
    not matured (``models.early_outcomes``). Given a Dask ``client``, boosters on more than
    ``engine.train_on_cluster_rows`` rows train across its workers (:func:`_boost_on_cluster`). Given the model
    ``in_service`` (the champion), a time-telling group whose help is within noise is kept or dropped as that
    model did (:func:`drop_time_groups`), and its calibration method kept likewise (:func:`oof_losses`)."""
    lc = cfg.data.leads
    named = post_outcome_columns([*lc.categorical, *lc.numeric], cfg.features.allow_leaky)
    if named:
        log.warning("train: mapped columns named as CRM exports name what is filled in after contact or after the "
                    "outcome: %s. If they are set after a lead arrives, the model learns from the future: leave them "
                    "out of the config, or list them in features.allow_leaky if they are known at arrival",
                    ", ".join(f"{col!r} ({name})" for col, name in named.items()))
    check_fit_minimums(fs, cfg)
    frame = fs.frame.to_pandas()
    data = frame[frame["mature"] & frame["label"].notna()].copy()
    now = train_now_model(landmarks, cfg, client, getattr(in_service, "now", None)) if landmarks is not None else None
    young = None
    if as_of is not None and fs.mode != "snapshot" and "campaign" in frame and "won_at" in frame:
        young = (frame, pd.Timestamp(as_of))
    result = fit_recipe(data, fs, cfg, time_column=None if fs.mode == "snapshot" else "created_at",
                        now=now.model if now else None, young=young, client=client, in_service=in_service)
    result.now = now
    if now is not None:  # the fit beside it on the same landmark rows: what publishing the fit alone would say
        _fit_beside(now, frame, result.model.evaluated or result.model)
    log.info("train: %s", candidates_line(result))
    if result.params["time_groups"]:
        log.info("train: features that may only tell time, validated forward on the validation leads: %s",
                 time_groups_line(result))
    if result.params["level_trend"]:
        log.info("train: %s", trend_line(result.params["level_trend"], "leads"))
    if result.params.get("outcome_factors"):
        log.info("train: %s", factors_line(result.params["outcome_factors"]))
    kind = result.params["model_kind"]
    what = {"lightgbm": f"{result.params['final_rounds']} trees", "blend": f"{result.params['final_rounds']} trees "
            "blended with the logistic regression"}.get(kind, f"the {KIND_WORDS[kind]}")
    log.info("train: %s training leads, %s calibration; registered model: %s refit on all %s mature leads, with that "
             "calibration", f"{result.split_counts['train_leads']:,}", result.params["calibration"], what,
             f"{result.split_counts['final_fit_leads']:,}")
    return result


KIND_WORDS = {"lightgbm": "LightGBM booster", "logistic": "logistic regression", "naive_bayes": "naive Bayes",
              "blend": "blend of booster and logistic regression"}


def factors_line(summary: dict) -> str:
    """What the young leads' early wins said about their campaigns."""
    return (f"campaign outcome factors from the {summary['young_leads']:,} leads that have not matured "
            f"({summary['early_wins']:,.0f} early wins where their probabilities and time open gave "
            f"{summary['early_wins_expected']:,.1f}); campaigns marked down by more than 10 %: "
            f"{summary['campaigns_down']} (lowest {summary['lowest']:.2f}), up: {summary['campaigns_up']} (highest "
            f"{summary['highest']:.2f}); applied to the published scores")


def trend_line(trend: dict, rows: str) -> str:
    """How the calibrated level moved over the newest matured rows."""
    return (f"level after calibration moves by {trend['c']:+.3f} log-odds a year (standard error {trend['se']:.3f}) "
            f"over the validation and test {rows}; not carried forward (a window this short cannot tell the "
            "season from a drift)")


def time_groups_line(result: TrainResult) -> str:
    """Each time-telling group, kept or dropped, with the validation log loss with and without it."""
    return "; ".join(f"{name} {'dropped' if g['dropped'] else 'kept'}"
                     f"{' as by the model in service (a difference within noise)' if g.get('as_in_service') else ''} "
                     f"(log loss {g['valid_log_loss_with']:.4f} with, {g['valid_log_loss_without']:.4f} without, "
                     f"standard error of the difference {g['standard_error']:.4f})"
                     for name, g in result.params["time_groups"].items())


def candidates_line(result: TrainResult) -> str:
    """Which candidate won on the validation leads, and by how much."""
    losses = result.params["candidates_valid_log_loss"]
    kind = result.params["model_kind"]
    ranked = sorted(losses, key=losses.get)
    line = ", ".join(f"{KIND_WORDS[k]} {losses[k]:.4f}" for k in ranked)
    if len(ranked) == 1:
        return f"model: {KIND_WORDS[kind]} (validation log loss {losses[kind]:.4f})"
    margin = result.params.get("candidate_margin")
    if margin:
        return (f"registered the {KIND_WORDS[kind]}: simpler than the {KIND_WORDS[margin['best']]}, and its log loss "
                f"only {margin['gap']:.4f} above it, within one standard error ({margin['standard_error']:.4f}) on the "
                f"{result.split_counts['valid_leads']:,} validation leads (calibrated out of fold; {line})")
    runner = ranked[1]
    return (f"registered the {KIND_WORDS[kind]}: log loss {losses[runner] - losses[kind]:.4f} below the "
            f"{KIND_WORDS[runner]} on the {result.split_counts['valid_leads']:,} validation leads (calibrated out of "
            f"fold; {line})")


def _fit_beside(now: TrainResult, frame: pd.DataFrame, fit_model: LeadModel) -> None:
    """The fit (chance at arrival, by the evaluated fit model, which never saw the newest outcomes) of each of
    the now-model's test rows, and its metrics against their label (a win within the horizon after the landmark)."""
    test = now.test_frame
    rows = frame.set_index("lead_id").loc[test["lead_id"].to_numpy()].reset_index()
    test["fit"] = fit_model.probability(rows)
    now.baselines["fit"] = classification_metrics(test["label"].to_numpy(), test["fit"].to_numpy(),
                                                  test["weight"].to_numpy(np.float64))


def check_fit_minimums(fs: FeatureSet, cfg: Config) -> None:
    """:func:`check_minimums` on the leads whose outcome is known (two columns read: cheap enough to run before
    the landmark rows are built)."""
    t = fs.frame.select(["mature", "label"]).to_pandas()
    mature = t["mature"].astype(bool)
    labels = t.loc[mature & t["label"].notna(), "label"].to_numpy(np.float64)
    young_wins = int((~mature & (t["label"] == 1)).sum())
    check_minimums(labels, cfg, "" if fs.mode == "snapshot" else (
        f" (created at least label.horizon_days = {cfg.label.horizon_days} days before as_of"
        + (f"; {young_wins:,} more wins are of younger leads, which count once they are that old" if young_wins
           else "") + ")"))


def check_minimums(labels: np.ndarray, cfg: Config, known: str = "", what: str = "this export") -> None:
    """Stop (DataError, exit 2) below ``train.min_leads`` / ``min_wins`` / ``min_losses``, saying what is there
    and what is needed: a model on less would be published with probabilities nobody should trust."""
    tc = cfg.train
    n, wins = len(labels), int(np.nansum(labels))
    short = [f"{need:,} {name} (train.{key})" for name, key, have, need in (
        ("leads with a known outcome", "min_leads", n, tc.min_leads), ("wins", "min_wins", wins, tc.min_wins),
        ("leads that did not win", "min_losses", n - wins, tc.min_losses)) if have < need]
    if short:
        raise DataError(f"too little data to train: {what} has {n:,} leads with a known outcome{known}, {wins:,} of "
                        f"them won and {n - wins:,} did not; a model needs at least {' and '.join(short)}. Add "
                        "history, or lower those minimums in [train] to accept a less reliable model")


def train_now_model(fs: FeatureSet, cfg: Config, client=None, in_service: LeadModel | None = None) -> TrainResult:
    """The model of a win from now on: landmark rows (``features.build.build_landmarks``), split by landmark
    time, weighted."""
    data = fs.frame.to_pandas()
    if len(data) < cfg.train.min_leads or data["label"].sum() < cfg.train.min_wins:
        raise DataError(f"only {len(data):,} landmark rows ({int(data['label'].sum()):,} won within the horizon after "
                        f"their landmark): too few to learn a win from now on (at least train.min_leads = "
                        f"{cfg.train.min_leads:,} rows and train.min_wins = {cfg.train.min_wins:,} wins); add history "
                        "or lower label.horizon_days")
    # Tier cut-offs are set on leads as they arrive, so a tier means the same for both models: a lead that has
    # gone cold drops below the tiers of fresh ones.
    result = fit_recipe(data, fs, cfg, time_column="at", weight_column="weight",
                        tier_rows=data["landmark_days"].to_numpy() == 0, client=client, in_service=in_service,
                        bags=cfg.train.bags)
    log.info("train: model of a win from now on: %s landmark rows (%s won), %d trees, %s calibration",
             f"{len(data):,}", f"{int(data['label'].sum()):,}", result.best_iteration, result.params["calibration"])
    if result.params["time_groups"]:
        log.info("train: its features that may only tell time, validated forward: %s", time_groups_line(result))
    if result.params["level_trend"]:
        log.info("train: its %s", trend_line(result.params["level_trend"], "landmark rows"))
    return result


def lgb_params(cfg: Config) -> dict:
    tc = cfg.train
    return {
        "objective": "binary",
        "learning_rate": tc.learning_rate,
        "num_leaves": tc.num_leaves,
        "min_data_in_leaf": tc.min_child_samples,
        "feature_fraction": 0.9,
        # No row bagging: its draws depend on the number of rows, so one more lead would change every tree (the
        # bags of models.bags are drawn by lead id instead).
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
               now: LeadModel | None = None, young: tuple[pd.DataFrame, pd.Timestamp] | None = None,
               client=None, in_service: LeadModel | None = None, bags: int = 1) -> TrainResult:
    """Split, guard against leakage, fit, calibrate, evaluate and refit, for rows with a ``label`` (and, with
    ``weight_column``, a weight per row).

    - The evaluated model: trees on the oldest rows (``train``), early-stopped and calibrated on the next
      (``valid``), measured on the newest (``test``), which neither saw.
    - The registered model: the same recipe (rounds scaled to the data) refit on every row; given ``young``
      (every lead, matured or not, and the moment they are known at), with each campaign's outcome factor.
    - Given ``bags`` > 1, each booster is that many averaged (``models.bags``).
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

    params = lgb_params(cfg)
    # A model pickled before it recorded its decisions has none: a group is then decided by the sign.
    dropped = drop_time_groups(parts, y, w, fs, cfg, getattr(in_service, "time_groups", None), bags)
    categorical = [c for c in fs.categorical if c not in dropped["features"]]
    numeric = [c for c in fs.numeric if c not in dropped["features"]]
    on_cluster = client is not None and len(parts["train"]) > cfg.engine.train_on_cluster_rows
    bags = bag_count(len(parts["train"]), bags)
    in_bag = bag_rows(parts["train"], bags)
    # The check trained these very boosters when it used every training row.
    encoder, members = dropped["trained"].get((tuple(categorical), tuple(numeric))) or (None, None)
    if on_cluster:
        # Early stopping inside lightgbm.dask can hang (lightgbm#6351, #4493). So: a first guess of the rounds by
        # early stopping here on a sample of the training rows; up to three times that (at least 100) on the
        # cluster, the validation loss recorded; the booster cut where its curve levels off, as _boost does. (The
        # sample's rounds alone are not enough: on 30,000 leads, 81 trees from a 95 % sample against 59 from all
        # rows cost 0.009 ROC AUC.)
        encoder = FeatureEncoder(categorical, numeric).fit(parts["train"])
        members = []
        for rows in in_bag:
            mine = np.arange(len(parts["train"]))[rows]
            limit = min(cfg.engine.train_on_cluster_rows, len(mine))
            sample = np.sort(np.random.default_rng(tc.seed).choice(mine, limit, replace=False))
            guess = _boost(encoder, parts, y, w, params, tc, rows=sample)[0].current_iteration()
            members.append(_boost_on_cluster(client, encoder, parts["train"].iloc[rows], y["train"][rows],
                                             w["train"][rows], params, min(tc.num_boost_round, max(100, 3 * guess)),
                                             valid=(parts["valid"], y["valid"], w["valid"])))
    elif members is None:
        encoder = FeatureEncoder(categorical, numeric).fit(parts["train"])
        members = _boost(encoder, parts, y, w, params, tc, bags=bags)
    booster = averaged(members)
    # A booster from the cluster learned from the matrix (categories as codes), as the registered model predicts.
    # Only the validation and test rows are predicted; their matrices are let go at once (memory at 3M leads).
    to_matrix = encoder.matrix if on_cluster else encoder.transform
    raw = {"lightgbm": {name: booster.predict(to_matrix(parts[name])) for name in ("valid", "test")}}

    baselines, baseline_probability, simple = {}, {}, {}
    if not weight_column:  # the baselines know no weights; the fit model is the one they are there to check
        for name in SIMPLE:
            simple[name] = baseline = SIMPLE[name](categorical, numeric, tc.seed).fit(parts["train"], y["train"])
            raw[name] = {part: baseline.predict_proba(parts[part]) for part in ("valid", "test")}
            baselines[name] = _evaluate(raw[name]["test"], y["test"], raw[name]["valid"], cfg.scoring.tier_shares[0])
            baseline_probability[name] = raw[name]["test"]
        raw["blend"] = {part: blend(raw["lightgbm"][part], raw["logistic"][part]) for part in ("valid", "test")}

    offered = [name for name in raw if name in tc.candidates or weight_column] or ["lightgbm"]
    before = getattr(getattr(in_service, "calibrator", None), "method", None)
    choice = {name: oof_losses(raw[name]["valid"], y["valid"], tc.seed, weight=w["valid"], before=before)
              for name in offered}
    kind, margin = pick_candidate({name: c[1] for name, c in choice.items()}, w["valid"])
    method = choice[kind][0]
    linear_kind = "logistic" if kind == "blend" else kind if kind in simple else None
    uses_booster = kind in ("lightgbm", "blend")
    calibrator = Calibrator(method).fit(raw[kind]["valid"], y["valid"], w["valid"])
    p_valid = calibrator.transform(raw[kind]["valid"])
    keep = tier_rows[mask["valid"]]
    evaluated = LeadModel(encoder, booster if uses_booster else None, calibrator,
                          tier_cutoffs(p_valid[keep], cfg.scoring.tier_shares, w["valid"][keep]), fs.labels,
                          kind=kind, linear=simple.get(linear_kind))
    p_test = calibrator.transform(raw[kind]["test"])
    # How the calibrated level moves over the validation and test rows (the newest matured ones), reported, not
    # carried forward: over a window shorter than a year the season and the drift cannot be told apart (on
    # 1,000,000 generator leads the slope is -1.28 a year where the drift is -0.3, and carried forward it would
    # put the immature leads 41 % below the truth instead of 6 %).
    trend = None
    if time_column is not None:
        when = {part: _years(parts[part][time_column]) for part in ("valid", "test")}
        center = np.average(when["valid"], weights=w["valid"])
        trend = level_trend(np.concatenate([y["valid"], y["test"]]), np.concatenate([p_valid, p_test]),
                            np.concatenate([w["valid"], w["test"]]),
                            np.concatenate([when["valid"], when["test"]]) - center)

    # The registered model: the evaluated recipe (features, parameters, rounds scaled to the rows, calibrator, tier
    # cut-offs) refit on every row. Without it, the newest 30 % of known outcomes (the validation and test rows)
    # would never reach the model in service, and campaigns that started in that time would be unknown to it
    # (calibrating a model fitted without the test rows on them instead leaves such campaigns at the average:
    # on 200,000 generator leads, the newest leads' mean probability 11 % below the truth rather than 5 %).
    # Each bag's booster refit on its bag's rows of every row (a lead's bag does not change).
    final_encoder = FeatureEncoder(categorical, numeric).fit(data)
    final = None
    if uses_booster:
        matrix = None if on_cluster else final_encoder.transform(data)
        refit = []
        for member, train_rows, all_rows in zip(members, in_bag, bag_rows(data, bags)):
            rounds = max(1, round(member.current_iteration() * _count(all_rows, len(data))
                                  / _count(train_rows, len(parts["train"]))))
            if on_cluster:
                refit.append(_boost_on_cluster(client, final_encoder, data.iloc[all_rows], y_all.to_numpy()[all_rows],
                                               w_all[all_rows], params, rounds))
            else:
                refit.append(lgb.train(params, lgb.Dataset(matrix.iloc[all_rows], y_all.to_numpy()[all_rows],
                                                           weight=w_all[all_rows], categorical_feature=categorical),
                                       num_boost_round=rounds))
        final = averaged(refit)
        del matrix  # every row as a matrix: not needed past the refit
    final_linear = SIMPLE[linear_kind](categorical, numeric, tc.seed).fit(data, y_all.to_numpy()) if linear_kind else None
    cutoffs = evaluated.tier_cutoffs
    reasons = ReasonBook(fs.categorical, fs.numeric, fs.labels, cfg.features.prior_strength,
                         definitions=fs.definitions).fit(data, y_all.to_numpy(), w_all)
    recent = pd.concat([parts["valid"], parts["test"]])
    plain = LeadModel(final_encoder, final, calibrator, cutoffs, kind=kind, linear=final_linear)
    p_recent = plain.probability(recent)
    factors = None
    if young is not None:
        everyone, as_of = young
        open_rows = ~everyone["mature"].to_numpy(bool)
        p_young = np.full(len(everyone), np.nan)
        p_young[open_rows] = plain.probability(everyone[open_rows])
        factors = OutcomeFactors("campaign").fit(everyone, p_young, as_of, cfg.label.horizon_days)
    snapshot = time_column is None
    # The evaluated model travels along: the next training run's gate compares recipes fitted on similar
    # history (this one against the next one's evaluated model) on leads neither has seen.
    model = LeadModel(final_encoder, final, calibrator, cutoffs, fs.labels, reasons=reasons,
                      attribution=PathAttribution(final).fit() if uses_booster else None,
                      reference=DriftReference(fs.categorical, fs.numeric).fit(recent, p_recent),
                      trained_through=None if snapshot else pd.Timestamp(data[time_column].max()),
                      evaluated=evaluated,
                      evaluated_through=None if snapshot else pd.Timestamp(
                          max(parts["train"][time_column].max(), parts["valid"][time_column].max())),
                      now=now, kind=kind, linear=final_linear, outcome_factors=factors,
                      time_groups={name: not g["dropped"] for name, g in dropped["groups"].items()})

    weighted = w["test"] if weight_column else None
    metrics = classification_metrics(y["test"], p_test, weighted)
    metrics["valid_roc_auc"] = classification_metrics(y["valid"], p_valid, w["valid"] if weight_column else None)["roc_auc"]
    tiers = evaluated.tier(p_test)
    wins = y["test"] == 1
    metrics["tier_a_win_share"] = float(np.average(tiers[wins] == "A", weights=w["test"][wins])) if wins.any() else 0.0

    extra = [c for c in ("created_at", "at", "landmark_days", weight_column) if c and c in parts["test"].columns]
    test_frame = parts["test"][["lead_id", *extra, "label"]].copy()
    test_frame["tier"] = tiers
    test_frame["probability"] = p_test
    unit = "rows" if weight_column else "leads"
    counts = {f"{k}_{unit}": len(v) for k, v in parts.items()} | {f"final_fit_{unit}": len(data)}
    counts |= {f"{k}_wins": int(y[k].sum()) for k in parts}
    params_out = {**params, "split": "stratified random" if snapshot else "time-forward",
                  "calibration": method, "best_iteration": booster.current_iteration(),
                  "final_rounds": final.current_iteration() if uses_booster else 0, "bags": bags,
                  "model_kind": kind,
                  "candidates_valid_log_loss": {name: round(float(np.average(c[1], weights=w["valid"])), 6)
                                                for name, c in choice.items()},
                  "candidate_margin": margin,
                  "n_features": len(encoder.features_), "tier_cutoffs": [round(c, 6) for c in cutoffs],
                  "time_groups": dropped["groups"], "level_trend": trend,
                  "outcome_factors": factors.summary() if factors is not None else None}
    return TrainResult(model=model, metrics=metrics, params=params_out, split_counts=counts,
                       test_frame=test_frame, single_feature=single, baselines=baselines,
                       baseline_probability=baseline_probability, best_iteration=booster.current_iteration())


def paired_difference(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """The weighted mean of ``a - b`` (per-row losses of two models on the same rows) and its standard error."""
    weights = weights / weights.sum()
    diff = a - b
    mean = float(np.sum(weights * diff))
    return mean, float(np.sqrt(np.sum(weights ** 2 * (diff - mean) ** 2)))


def pick_candidate(losses: dict[str, np.ndarray], weights: np.ndarray) -> tuple[str, dict | None]:
    """The candidate with the lowest validation log loss (``losses``: each candidate's loss per validation row,
    calibrated out of fold), unless a simple one (``SIMPLE``) is within one standard error of it: then the
    best of those (the one-standard-error rule). On a few hundred validation leads the booster often wins by
    noise and then ranks the newest leads worse than the naive Bayes. Returns the kind and, when the rule
    decided, what it weighed (the best's name, the gap and its standard error)."""
    mean = {name: float(np.average(v, weights=weights)) for name, v in losses.items()}
    best = min(mean, key=mean.get)
    if best in SIMPLE:
        return best, None
    near = []
    for name in SIMPLE:
        if name in losses:
            gap, se = paired_difference(losses[name], losses[best], weights)
            if gap <= se:
                near.append((mean[name], name, gap, se))
    if not near:
        return best, None
    _, name, gap, se = min(near)
    return name, {"best": best, "gap": round(gap, 6), "standard_error": round(se, 6)}


def _years(moments: pd.Series) -> np.ndarray:
    """Timestamps as years since 1970 (for slopes per year)."""
    return pd.DatetimeIndex(moments).as_unit("us").asi8 / (365.25 * 86400e6)


def level_trend(y: np.ndarray, p: np.ndarray, w: np.ndarray, years: np.ndarray) -> dict[str, float]:
    """The drift of the level after calibration: ``c`` in logit P(win) = logit(p) + c * years, by maximum
    likelihood, with its (sandwich) standard error."""
    offset, c, info = np.log(p / (1 - p)), 0.0, 0.0
    for _ in range(30):
        q = 1 / (1 + np.exp(-(offset + c * years)))
        info = float(np.sum(w * q * (1 - q) * years ** 2))
        if info <= 0:
            return {"c": 0.0, "se": float("inf")}
        step = float(np.sum(w * (y - q) * years)) / info
        c += step
        if abs(step) < 1e-9:
            break
    q = 1 / (1 + np.exp(-(offset + c * years)))
    se = float(np.sqrt(np.sum((w * (y - q) * years) ** 2))) / info
    return {"c": round(c, 6), "se": round(se, 6)}


STOP_TOLERANCE = 0.001

# Rows the time-group check trains on at most: it compares boosters with and without a group, and needs only
# enough rows for the difference to show.
GROUP_CHECK_ROWS = 60_000


def _count(rows, n: int) -> int:
    """How many rows ``rows`` (a bag's positions, or ``slice(None)``: all ``n``) picks."""
    return n if isinstance(rows, slice) else len(rows)


def _boost(encoder: FeatureEncoder, parts: dict, y: dict, w: dict, params: dict, tc, rows: np.ndarray | None = None,
           bags: int = 1) -> list:
    """One booster per bag (``models.bags``) of the training rows (``rows`` of them, if given), each early-stopped
    on every validation row and cut to its best iteration, so the model predicts what was evaluated."""
    import lightgbm as lgb

    train, y_train, w_train = parts["train"], y["train"], w["train"]
    if rows is not None:
        train, y_train, w_train = train.iloc[rows], y_train[rows], w_train[rows]
    x = encoder.transform(train)
    x_valid = encoder.transform(parts["valid"])
    members = []
    for mine in bag_rows(train, bags):
        dtrain = lgb.Dataset(x.iloc[mine], y_train[mine], weight=w_train[mine], categorical_feature=encoder.categorical,
                             free_raw_data=False)
        dvalid = lgb.Dataset(x_valid, y["valid"], weight=w["valid"], reference=dtrain)
        curve: dict = {}
        booster = lgb.train({**params, "metric": "binary_logloss"}, dtrain, num_boost_round=tc.num_boost_round,
                            valid_sets=[dvalid], callbacks=[lgb.early_stopping(tc.early_stopping_rounds, verbose=False),
                                                            lgb.record_evaluation(curve)])
        # The first iteration within 0.1 % of the best validation loss: the lowest point of a flat curve moves a
        # long way on a change of one row (107 trees or 191), the start of its plateau does not.
        loss = np.asarray(curve["valid_0"]["binary_logloss"])
        best = int(np.argmax(loss <= loss.min() * (1 + STOP_TOLERANCE))) + 1
        members.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=best)))
    return members


def _boost_on_cluster(client, encoder: FeatureEncoder, frame: pd.DataFrame, y: np.ndarray, w: np.ndarray,
                      params: dict, rounds: int, valid: tuple | None = None):
    """``rounds`` trees on every row of ``frame``, trained by ``lightgbm.dask`` across the cluster's workers, as a
    plain booster (``to_local``): the registered model and serving do not change. One fixed encoding for every
    partition (the driver's encoder, categories as their codes); each worker uses its own threads. With
    ``valid`` (frame, labels, weights), the booster is cut where the validation loss levels off."""
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMClassifier

    # Errors only: not the workers' retries while they connect, nor "n_jobs will be ignored" (each worker uses
    # its own threads).
    client.run(quiet_lightgbm)
    quiet_lightgbm()
    # One block of consecutive rows per worker, placed here rather than by the scheduler: which rows a worker
    # holds decides its bins, so a placement left to chance gives another model on every run.
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    x = encoder.matrix(frame)
    settings = {k: v for k, v in params.items() if k not in ("num_threads", "seed", "verbose")}
    categorical = [i for i, c in enumerate(encoder.features_) if c in set(encoder.categorical)]

    def fit():
        dx, dy, dw = (placed_rows(client, v, workers) for v in (x, y.astype(np.float64), np.asarray(w, np.float64)))
        model = DaskLGBMClassifier(client=client, n_estimators=rounds, random_state=params["seed"], verbose=-1,
                                   **settings)
        model.fit(dx, dy, sample_weight=dw, categorical_feature=categorical)
        return model.to_local().booster_

    # Not started again: the workers form one LightGBM network, and the one left may wait for the lost one.
    booster = again_if_lost(client, "training across the cluster (lightgbm.dask)", fit, retries=0)
    if valid is not None:  # the validation curve here, on every validation row (a worker sees only its own)
        loss = _loss_curve(booster, encoder.matrix(valid[0]), np.asarray(valid[1], np.float64),
                           np.asarray(valid[2], np.float64))
        best = int(np.argmax(loss <= loss.min() * (1 + STOP_TOLERANCE))) + 1
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    log.info("train: %d trees on %s rows across %d Dask workers (lightgbm.dask)", booster.current_iteration(),
             f"{len(x):,}", len(workers))
    return booster


def _loss_curve(booster, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted log loss after each tree, one tree's raw scores added at a time (the cost of one prediction)."""
    raw = np.zeros(len(x))
    out = np.empty(booster.current_iteration())
    for i in range(len(out)):
        raw += booster.predict(x, raw_score=True, start_iteration=i, num_iteration=1)
        p = np.clip(1 / (1 + np.exp(-raw)), 1e-15, 1 - 1e-15)
        out[i] = -np.average(y * np.log(p) + (1 - y) * np.log1p(-p), weights=w)
    return out


def placed_rows(client, values: np.ndarray, workers: list[str]):
    """``values`` as a Dask array of one block per worker: every n-th row from the i-th, so that each worker holds
    rows from all of the time the data covers. (LightGBM bins each feature on one worker's rows: with consecutive
    blocks, the oldest rows set half the features' bins, and on 30,000 leads the booster lost 0.007 ROC AUC.)"""
    import dask
    import dask.array as da

    arrays = []
    for i, worker in enumerate(workers):
        rows = np.arange(i, len(values), len(workers))
        if len(rows):
            part = client.scatter(np.ascontiguousarray(values[rows]), workers=[worker])
            arrays.append(da.from_delayed(dask.delayed(part), shape=(len(rows), *values.shape[1:]), dtype=values.dtype))
    return da.concatenate(arrays)


def quiet_lightgbm() -> None:
    """LightGBM's messages through Python logging, errors only: its network set-up on every worker prints a
    dozen lines of [Info] and [Warning] otherwise."""
    import lightgbm as lgb

    logger = logging.getLogger("lightgbm")
    logger.setLevel(logging.ERROR)
    lgb.register_logger(logger)


def drop_time_groups(parts: dict, y: dict, w: dict, fs: FeatureSet, cfg: Config,
                     kept_before: dict[str, bool] | None = None, bags: int = 1) -> dict:
    """Each group of features that may only tell time (``features.definitions.time_groups``), validated forward:
    a booster without the group against one with every feature, on the same training rows (at most
    ``GROUP_CHECK_ROWS``), by calibrated log loss on the validation rows. A group is kept only when it lowers
    that loss: what only tells time carries to leads of a time training never saw only if leads newer than
    training show it does. (Keeping a group only when it helps by more than one standard error of the
    difference, row by row, dropped the generator's real season and left its newest leads 19 % over-predicted
    instead of 12 %: ``tests/model/test_from_now.py``.)

    Within noise, though, the sign flips on a few more rows, and every score with it (a landmark booster went from
    0.0010 better with the month to 0.0015 worse on 7 more rows of 29,000, a standard error of 0.0013). So given
    ``kept_before`` (the model in service's decisions: group -> kept), a group whose help is within twice its
    standard error is decided as that model decided it; a first model, or a group that model never checked, is
    decided by the sign. A decision made on noise stays until the evidence against it exceeds twice its
    standard error, which more history brings. Each booster is ``bags`` averaged, as in :func:`fit_recipe`."""
    groups = {name: [f for f in names if f in fs.features]
              for name, names in time_groups(fs.definitions).items()} if fs.definitions else {}
    groups = {name: names for name, names in groups.items() if names}
    out = {"features": set(), "groups": {}, "trained": {}}
    if not groups:
        return out
    tc, params = cfg.train, lgb_params(cfg)
    n = len(parts["train"])
    rows = (np.sort(np.random.default_rng(tc.seed).choice(n, GROUP_CHECK_ROWS, replace=False))
            if n > GROUP_CHECK_ROWS else None)

    def losses(categorical: list[str], numeric: list[str]) -> np.ndarray:
        encoder = FeatureEncoder(categorical, numeric).fit(parts["train"] if rows is None else parts["train"].iloc[rows])
        members = _boost(encoder, parts, y, w, params, tc, rows, bag_count(n if rows is None else len(rows), bags))
        if rows is None:
            out["trained"][(tuple(categorical), tuple(numeric))] = (encoder, members)
        raw = averaged(members).predict(encoder.transform(parts["valid"]))
        return oof_losses(raw, y["valid"], tc.seed, weight=w["valid"])[1]

    weights = w["valid"] / w["valid"].sum()
    full = losses(fs.categorical, fs.numeric)
    for name, names in groups.items():
        without = losses([c for c in fs.categorical if c not in names], [c for c in fs.numeric if c not in names])
        gain, se = paired_difference(without, full, weights)  # what the group saves
        as_before = kept_before is not None and name in kept_before and abs(gain) <= 2 * se
        drop = not kept_before[name] if as_before else gain <= 0
        out["groups"][name] = {"features": names, "valid_log_loss_with": round(float(np.sum(weights * full)), 6),
                               "valid_log_loss_without": round(float(np.sum(weights * without)), 6),
                               "standard_error": round(se, 6), "dropped": bool(drop), "as_in_service": as_before}
        if drop:
            out["features"] |= set(names)
    return out


def _evaluate(p_test: np.ndarray, y_test: np.ndarray, p_valid: np.ndarray, tier_a_share: float) -> dict[str, float]:
    """Test metrics of a baseline; its tier A cut-off is set on its own validation probabilities, like the model's."""
    metrics = classification_metrics(y_test, p_test)
    cutoff = float(np.quantile(p_valid, 1 - tier_a_share))
    wins = y_test == 1
    metrics["tier_a_win_share"] = float((p_test[wins] >= cutoff).mean()) if wins.any() else 0.0
    return metrics


def oof_losses(raw: np.ndarray, y: np.ndarray, seed: int, folds: int = 3,
               weight: np.ndarray | None = None, before: str | None = None) -> tuple[str, np.ndarray]:
    """The calibration method with the lower log loss out of fold, and each row's log loss under it. While the
    difference is within twice its standard error, the model in service's method (``before``) stays: a method
    that flips between runs on noise moves every probability."""
    w = np.ones(len(raw)) if weight is None else weight
    fold = np.random.default_rng(seed).integers(0, folds, len(raw))
    losses = {}
    for method in ("isotonic", "sigmoid"):
        p = np.empty(len(raw))
        for k in range(folds):
            fit, held = fold != k, fold == k
            if len(np.unique(y[fit])) < 2:
                p = np.full(len(y), np.average(y, weights=w))
                return "sigmoid", -(y * np.log(p) + (1 - y) * np.log(1 - p))
            p[held] = Calibrator(method).fit(raw[fit], y[fit], w[fit]).transform(raw[held])
        losses[method] = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    gain, se = paired_difference(losses["sigmoid"], losses["isotonic"], w)  # what isotonic saves
    method = before if before in losses and abs(gain) <= 2 * se else "isotonic" if gain >= 0 else "sigmoid"
    return method, losses[method]


def tier_cutoffs(p: np.ndarray, shares: tuple[float, float, float], weight: np.ndarray | None = None) -> list[float]:
    """Probability thresholds so that A, B and C hold the configured shares of the rows (weighted)."""
    cumulative = np.cumsum(shares)
    if weight is None:
        return [float(np.quantile(p, 1 - c)) for c in cumulative]
    order = np.argsort(p, kind="stable")
    cw = np.cumsum(weight[order]) / weight.sum()
    return [float(p[order][min(np.searchsorted(cw, 1 - c), len(p) - 1)]) for c in cumulative]
