"""Drift: how far the leads being scored are from the leads the model was checked on (population stability index).

The reference is fitted at training time on the validation and test leads (the newest mature ones) and
travels inside the model, so every scoring run compares against what that model version was evaluated on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-4  # an empty bin would make PSI infinite
MAX_LEVELS = 20


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two bin shares; under 0.1 stable, 0.1-0.2 moderate, above 0.2 a shift."""
    e = np.clip(np.asarray(expected, np.float64), EPS, None)
    a = np.clip(np.asarray(actual, np.float64), EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


class DriftReference:
    """Bin edges and shares per feature (deciles for numerics, top levels for categoricals) and for the score."""

    def __init__(self, categorical: list[str], numeric: list[str], bins: int = 10):
        self.categorical = categorical
        self.numeric = numeric
        self.bins = bins

    def fit(self, frame: pd.DataFrame, probability: np.ndarray) -> DriftReference:
        self.edges_, self.levels_, self.shares_ = {}, {}, {}
        for col in self.numeric:
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            finite = x[~np.isnan(x)]
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, self.bins + 1)[1:-1])) if len(finite) else np.array([])
            self.edges_[col] = edges
            self.shares_[col] = self._numeric_shares(x, edges)
        for col in self.categorical:
            v = frame[col].astype("string")
            self.levels_[col] = list(v.value_counts(dropna=True).index[:MAX_LEVELS])
            self.shares_[col] = self._level_shares(v, self.levels_[col])
        p = np.asarray(probability, np.float64)
        self.edges_["score"] = np.unique(np.quantile(p, np.linspace(0, 1, self.bins + 1)[1:-1]))
        self.shares_["score"] = self._numeric_shares(p, self.edges_["score"])
        self.rows_ = len(frame)
        return self

    @staticmethod
    def _numeric_shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Shares per bin, with missing values as one more bin."""
        missing = np.isnan(x)
        counts = np.bincount(np.searchsorted(edges, x[~missing], side="right"), minlength=len(edges) + 1)
        return np.append(counts, missing.sum()) / max(len(x), 1)

    @staticmethod
    def _level_shares(v: pd.Series, levels: list[str]) -> np.ndarray:
        codes = pd.Index(levels, dtype=object).get_indexer(v.astype(object).to_numpy())  # -1: other or missing
        other = (codes == -1) & v.notna().to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(levels))
        return np.append(counts, [other.sum(), v.isna().sum()]) / max(len(v), 1)

    def compare(self, frame: pd.DataFrame, probability: np.ndarray) -> dict[str, float]:
        """PSI per feature and for the score (key ``score``), for the leads being scored."""
        out = {}
        for col in self.numeric:
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            out[col] = psi(self.shares_[col], self._numeric_shares(x, self.edges_[col]))
        for col in self.categorical:
            out[col] = psi(self.shares_[col], self._level_shares(frame[col].astype("string"), self.levels_[col]))
        p = np.asarray(probability, np.float64)
        out["score"] = psi(self.shares_["score"], self._numeric_shares(p, self.edges_["score"]))
        return out


def is_trend(feature: str) -> bool:
    """Calendar months and running counts (earlier leads, earlier wins) move with time by construction."""
    return feature == "created_month" or feature.endswith(("_prior_leads", "_prior_wins"))


def drift_report(model, frame: pd.DataFrame, as_of, labels: dict[str, str], window_days: int, psi_warn: float) -> dict:
    """PSI of the newest arrivals (the last ``window_days``) against the model's reference. Trend features are
    reported, never warned about."""
    if "created_at" in frame.columns and frame["created_at"].notna().any():
        since = pd.Timestamp(as_of) - pd.Timedelta(days=window_days)
        window = frame[frame["created_at"] >= since]
        what = f"leads created in the {window_days} days before {pd.Timestamp(as_of):%Y-%m-%d}"
    else:  # all leads: the open ones alone are selected by their outcome
        window, what = frame, "every lead (the export has no creation time)"
    reference = getattr(model, "reference", None)
    if reference is None or len(window) == 0:
        return {"available": False, "reason": "no recent leads, or the model was trained without a drift reference",
                "features": []}
    psi_by = reference.compare(window, model.probability(window))
    features = sorted(({"feature": f, "label": labels.get(f, f), "psi": round(v, 4), "trend": is_trend(f),
                        "drifted": v > psi_warn and not is_trend(f)} for f, v in psi_by.items() if f != "score"),
                      key=lambda r: -r["psi"])
    return {"available": True, "psi_warn": psi_warn, "compared": what, "compared_rows": int(len(window)),
            "reference": "validation and test leads of the model version (the newest leads with known outcomes)",
            "reference_rows": int(getattr(reference, "rows_", 0)),
            "score_psi": round(psi_by["score"], 4), "score_drifted": psi_by["score"] > psi_warn,
            "max_feature_psi": max((f["psi"] for f in features if not f["trend"]), default=0.0), "features": features}
