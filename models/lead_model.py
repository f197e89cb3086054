"""The one model object: preprocessing, booster (or a simpler model), calibrator and tier cut-offs, logged as an
MLflow pyfunc."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.encoding import FeatureEncoder
from models.explain import top_reasons
from models.threads import threads_for

TIERS = np.array(["A", "B", "C", "D"])


class Calibrator:
    """Maps raw booster probabilities to calibrated ones: isotonic or sigmoid (Platt on the logit)."""

    def __init__(self, method: str):
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Calibrator:
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y, sample_weight=weight)
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            self.model_ = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y, sample_weight=weight)
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":  # IsotonicRegression.predict's interpolation, without its input checks
            iso = self.model_
            p = np.interp(np.clip(raw, iso.X_min_, iso.X_max_), iso.X_thresholds_, iso.y_thresholds_)
        else:  # LogisticRegression.predict_proba's own arithmetic, without its input checks (0.3 ms per call)
            from scipy.special import expit

            p = expit(_logit(raw) * self.model_.coef_[0, 0] + self.model_.intercept_[0])
        # Keep probabilities away from exact 0 and 1: log loss stays finite and no lead is "certain".
        return np.clip(p, 1e-4, 1 - 1e-4)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two models' probabilities blended: the mean of their log-odds."""
    return 1 / (1 + np.exp(-(_logit(a) + _logit(b)) / 2))


def score_from_probability(p: np.ndarray) -> np.ndarray:
    """Score 1-99: the probability in percent, so a score of 20 means about one in five closes."""
    return np.clip(np.rint(p * 100), 1, 99).astype(np.int64)


class LeadModel(PythonModel):
    """Feature frame in, probability / score / tier out. Every part is fitted elsewhere (models.train) and
    passed in; the constructor only keeps them, and nothing is learned or attached later.

    Two of them make the registered model: the ``fit`` model (this object: a win within the horizon of a lead's
    arrival, from what was known then) carries the model of a win from now on as ``now`` (a win within the
    horizon after the moment in its frame's ``at`` column, from everything known then)."""

    def __init__(self, encoder: FeatureEncoder, booster, calibrator: Calibrator, tier_cutoffs: list[float],
                 feature_labels: dict[str, str] | None = None, reasons=None, attribution=None, reference=None,
                 trained_through=None, evaluated: LeadModel | None = None, evaluated_through=None,
                 now: LeadModel | None = None, kind: str = "lightgbm", linear=None, outcome_factors=None,
                 time_groups: dict[str, bool] | None = None):
        self.encoder = encoder
        # What gives the raw probability (models.train picks it on the validation leads): the booster
        # ("lightgbm"), a simple model (``linear``: "logistic" or "naive_bayes"), or both ("blend": the mean of
        # their log-odds).
        self.kind = kind
        self.booster = booster
        self.linear = linear
        self.calibrator = calibrator
        self.tier_cutoffs = list(tier_cutoffs)  # probability thresholds for A, B, C (descending)
        self.feature_labels = dict(feature_labels or {})
        self.reasons = reasons  # models.explain.ReasonBook, fitted on the training leads
        self.attribution = attribution  # models.explain.PathAttribution of the booster, needed to word reasons
        self.reference = reference  # models.drift.DriftReference, fitted on the validation and test leads
        self.trained_through = trained_through  # creation time of the newest lead it was fitted on (None: snapshot)
        self.evaluated = evaluated  # the same recipe fitted without the validation and test leads (see models.train)
        self.evaluated_through = evaluated_through
        self.now = now
        # models.early_outcomes.OutcomeFactors: what its campaigns' young leads have done since (registered
        # models of exports with time only); the scorer applies them to this model's and ``now``'s probabilities.
        self.outcome_factors = outcome_factors
        # Each time-telling group the training checked, and whether it kept it: the next training follows these
        # decisions while the difference a group makes is within noise (models.train.drop_time_groups).
        self.time_groups = dict(time_groups or {})

    @property
    def features(self) -> list[str]:
        return self.encoder.features_

    def raw_probability(self, frame: pd.DataFrame) -> np.ndarray:
        return self._raw(frame, self.encoder.matrix(frame))

    def _raw(self, frame, x: np.ndarray) -> np.ndarray:
        kind = getattr(self, "kind", "lightgbm")  # models pickled before there was a choice are boosters
        if kind == "lightgbm":
            return self.booster.predict(x, **threads_for(len(x)))
        if kind != "blend":
            return self.linear.predict_proba(frame)
        return blend(self.booster.predict(x, **threads_for(len(x))), self.linear.predict_proba(frame))

    def contributions(self, frame, x: np.ndarray) -> np.ndarray:
        """(leads x features) log-odds each feature adds to the raw score."""
        kind = getattr(self, "kind", "lightgbm")
        if kind == "lightgbm":
            return self.attribution.contributions(x)
        if kind != "blend":
            return self.linear.contributions(frame)
        return (self.attribution.contributions(x) + self.linear.contributions(frame)) / 2

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 0:
            return np.empty(0)
        return self.calibrator.transform(self.raw_probability(frame))


    def tier(self, probability: np.ndarray) -> np.ndarray:
        # Cut-offs are descending; the number of cut-offs a lead reaches or passes picks its tier.
        passed = (probability[:, None] >= np.asarray(self.tier_cutoffs)[None, :]).sum(axis=1)
        return TIERS[len(self.tier_cutoffs) - passed]

    def predict_frame(self, frame: pd.DataFrame, reason_tiers: tuple[str, ...] = (),
                      explain: np.ndarray | None = None) -> pd.DataFrame:
        """Probability, score and tier for every lead; reasons only for leads in ``reason_tiers`` (or, given, the
        rows where ``explain`` is true): they cost a second pass over the trees."""
        index = frame.index if isinstance(frame, pd.DataFrame) else None
        return pd.DataFrame(self.predict_columns(frame, reason_tiers, explain), index=index)

    def predict_columns(self, frame, reason_tiers: tuple[str, ...] = (), explain: np.ndarray | None = None,
                        factors=None) -> dict[str, np.ndarray]:
        """``predict_frame`` as a dict of arrays (a frame of one lead costs more to build than its trees).
        ``factors``: campaign outcome factors to apply before the tiers are cut."""
        x = self.encoder.matrix(frame)
        p = self.calibrator.transform(self._raw(frame, x)) if len(x) else np.empty(0)
        if factors is not None:
            p = factors.apply(frame, p)
        tier = self.tier(p)
        out = {"probability": p, "score": score_from_probability(p), "tier": tier}
        if reason_tiers or explain is not None:
            reasons = np.full(len(x), None, dtype=object)
            rows = np.flatnonzero(np.isin(tier, list(reason_tiers)) if explain is None else explain)
            if len(rows) and getattr(self, "reasons", None) is not None:
                if isinstance(frame, pd.DataFrame):
                    picked = frame.iloc[rows]
                else:  # columns as arrays: a frame of just the explained rows
                    picked = pd.DataFrame({c: np.asarray(frame[c])[rows] for c in self.features})
                reasons[rows] = top_reasons(self.contributions(picked, x[rows]), picked, self.features, self.reasons)
            out["reasons"] = reasons
        return out

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        return self.predict_frame(model_input)
