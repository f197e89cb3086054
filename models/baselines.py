"""Baselines trained and scored on the same leads as the model, so its numbers have something to beat.

- ``logistic``: one-hot categoricals (rare values pooled), median-imputed and scaled numerics with missing
  flags, logistic regression: what a careful analyst would build first.
- ``naive_bayes``: per-value win and loss frequencies multiplied together, the frequency naive Bayes that
  Odoo CRM's predictive lead scoring uses; numerics are cut into deciles first.
Baselines are fitted on at most ``MAX_FIT_ROWS`` training leads: enough for models this simple.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_FIT_ROWS = 200_000


def _sample(x: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    if len(y) <= MAX_FIT_ROWS:
        return x, y
    pick = np.sort(np.random.default_rng(seed).choice(len(y), MAX_FIT_ROWS, replace=False))
    return x.iloc[pick], y[pick]


class LogisticBaseline:
    def __init__(self, categorical: list[str], numeric: list[str], seed: int = 0):
        self.categorical = categorical
        self.numeric = numeric
        self.seed = seed

    def _frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[[*self.categorical, *self.numeric]].copy()
        for col in self.categorical:
            out[col] = out[col].astype("string").fillna("(missing)").astype(object)
        for col in self.numeric:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(np.float64)
        return out

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        x, y = _sample(self._frame(frame), y, self.seed)
        prep = ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), self.categorical),
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), self.numeric),
        ])
        self.pipeline_ = make_pipeline(prep, LogisticRegression(max_iter=500, C=1.0)).fit(x, y)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._frame(frame))[:, 1]


class NaiveBayesBaseline:
    def __init__(self, categorical: list[str], numeric: list[str], alpha: float = 1.0):
        self.categorical = categorical
        self.numeric = numeric
        self.alpha = alpha

    def _codes(self, frame: pd.DataFrame, col: str) -> np.ndarray:
        if col in self.numeric:
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            codes = np.searchsorted(self.edges_[col], x, side="right")
            return np.where(np.isnan(x), len(self.edges_[col]) + 1, codes)
        return self.levels_[col].get_indexer(frame[col].astype("string").fillna("(missing)").astype(object)) + 1

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> NaiveBayesBaseline:
        y = np.asarray(y, dtype=np.int64)
        self.edges_ = {c: np.unique(np.nanquantile(pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64),
                                                   np.linspace(0.1, 0.9, 9))) for c in self.numeric}
        self.levels_ = {c: pd.Index(frame[c].astype("string").fillna("(missing)").astype(object).unique())
                        for c in self.categorical}
        self.prior_ = np.log(np.array([(y == 0).sum(), (y == 1).sum()]) + self.alpha)
        self.log_likelihood_ = {}
        for col in [*self.categorical, *self.numeric]:
            codes = self._codes(frame, col)  # 0 is "not seen in training"
            size = codes.max() + 2
            counts = np.stack([np.bincount(codes[y == k], minlength=size) for k in (0, 1)]).astype(np.float64)
            counts += self.alpha
            self.log_likelihood_[col] = np.log(counts / counts.sum(axis=1, keepdims=True))
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        score = np.tile(self.prior_, (len(frame), 1))
        for col, table in self.log_likelihood_.items():
            codes = np.clip(self._codes(frame, col), 0, table.shape[1] - 1)
            score += table[:, codes].T
        score -= score.max(axis=1, keepdims=True)
        p = np.exp(score)
        return np.clip(p[:, 1] / p.sum(axis=1), 1e-6, 1 - 1e-6)
