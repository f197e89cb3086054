"""Baselines trained and scored on the same leads as the model, so its numbers have something to beat.

- ``logistic``: one-hot categoricals (rare values pooled), median-imputed and scaled numerics with missing
  flags, logistic regression: what a careful analyst would build first.
- ``naive_bayes``: per-value win and loss frequencies multiplied together, the frequency naive Bayes that
  Odoo CRM's predictive lead scoring uses; numerics are cut into deciles first.
Baselines are fitted on at most ``MAX_FIT_ROWS`` training leads: enough for models this simple. They are also
candidates for the registered model (``models.train``), so each gives per-feature log-odds contributions, from
which reasons are worded as for the booster.
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

    def _frame(self, frame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):  # columns as arrays (the real-time API)
            frame = pd.DataFrame({c: frame[c] for c in (*self.categorical, *self.numeric)})
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
        # One encoder per categorical column (as one encoder over all of them would do), so each output column
        # is known to come from one feature.
        prep = ColumnTransformer([
            *((f"cat{i}", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), [c])
              for i, c in enumerate(self.categorical)),
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), self.numeric),
        ], sparse_threshold=1.0)
        self.pipeline_ = make_pipeline(prep, LogisticRegression(max_iter=500, C=1.0)).fit(x, y)
        # Which feature each output column belongs to, and each column's mean on the training leads: a lead's
        # contribution of a feature is its columns' distance from the average lead times their coefficients.
        owner = np.empty(len(self.pipeline_[-1].coef_[0]), np.int64)
        for i in range(len(self.categorical)):
            owner[prep.output_indices_[f"cat{i}"]] = i
        if self.numeric:
            imputer = prep.named_transformers_["num"][0]
            flagged = getattr(imputer, "indicator_", None)
            extra = list(flagged.features_) if flagged is not None else []
            owner[prep.output_indices_["num"]] = len(self.categorical) + np.array([*range(len(self.numeric)), *extra])
        self.owner_ = owner
        self.center_ = np.asarray(prep.transform(x).mean(axis=0)).ravel()
        return self

    def predict_proba(self, frame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._frame(frame))[:, 1]

    def contributions(self, frame) -> np.ndarray:
        """(leads x features) log-odds against the average training lead."""
        from scipy import sparse

        z = self.pipeline_[0].transform(self._frame(frame))
        coef = self.pipeline_[-1].coef_[0]
        z = sparse.csr_matrix(z) if not sparse.issparse(z) else z.tocsr()
        by_column = z.multiply(coef[None, :]).tocsr()
        groups = sparse.csr_matrix((np.ones(len(coef)), (np.arange(len(coef)), self.owner_)),
                                   shape=(len(coef), len(self.categorical) + len(self.numeric)))
        return np.asarray((by_column @ groups).todense()) - (self.center_ * coef) @ groups


class NaiveBayesBaseline:
    def __init__(self, categorical: list[str], numeric: list[str], alpha: float = 1.0):
        self.categorical = categorical
        self.numeric = numeric
        self.alpha = alpha

    def _codes(self, frame, col: str) -> np.ndarray:
        values = pd.Series(frame[col]) if isinstance(frame[col], np.ndarray) else frame[col]
        if col in self.numeric:
            x = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
            codes = np.searchsorted(self.edges_[col], x, side="right")
            return np.where(np.isnan(x), len(self.edges_[col]) + 1, codes)
        return self.levels_[col].get_indexer(values.astype("string").fillna("(missing)").astype(object)) + 1

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> NaiveBayesBaseline:
        y = np.asarray(y, dtype=np.int64)
        self.edges_ = {c: np.unique(np.nanquantile(pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64),
                                                   np.linspace(0.1, 0.9, 9))) for c in self.numeric}
        self.levels_ = {c: pd.Index(frame[c].astype("string").fillna("(missing)").astype(object).unique())
                        for c in self.categorical}
        self.prior_ = np.log(np.array([(y == 0).sum(), (y == 1).sum()]) + self.alpha)
        self.ratio_, self.mean_ratio_ = {}, {}  # per feature: each value's log likelihood ratio of a win; its mean
        for col in [*self.categorical, *self.numeric]:
            codes = self._codes(frame, col)  # 0 is "not seen in training"
            size = codes.max() + 2
            counts = np.stack([np.bincount(codes[y == k], minlength=size) for k in (0, 1)]).astype(np.float64)
            counts += self.alpha
            likelihood = np.log(counts / counts.sum(axis=1, keepdims=True))
            self.ratio_[col] = likelihood[1] - likelihood[0]
            self.mean_ratio_[col] = float(self.ratio_[col][codes].mean())
        return self

    def _ratios(self, frame) -> np.ndarray:
        """(leads x features): each value's log likelihood ratio of a win."""
        n = len(frame[self.categorical[0] if self.categorical else self.numeric[0]])
        out = np.empty((n, len(self.ratio_)))
        for j, (col, ratio) in enumerate(self.ratio_.items()):
            out[:, j] = ratio[np.clip(self._codes(frame, col), 0, len(ratio) - 1)]
        return out

    def predict_proba(self, frame) -> np.ndarray:
        logit = self.prior_[1] - self.prior_[0] + self._ratios(frame).sum(axis=1)
        return np.clip(1 / (1 + np.exp(-logit)), 1e-6, 1 - 1e-6)

    def contributions(self, frame) -> np.ndarray:
        """(leads x features) log-odds against the average training lead."""
        return self._ratios(frame) - np.array(list(self.mean_ratio_.values()))
