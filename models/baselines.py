"""Baselines trained and scored on the same leads as the model, so its numbers have something to beat.

- ``logistic``: one-hot categoricals (rare values pooled), median-imputed and scaled numerics with missing
  flags, logistic regression: what a careful analyst would build first. A highly skewed numeric (a head count,
  a count of visits: skewness above 1) enters as its signed log when that is less skewed: linear in the raw
  count, a few huge companies would set the slope for everyone.
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


def signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _skewness(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if len(x) < 3 or x.std() == 0:
        return 0.0
    return float(np.mean((x - x.mean()) ** 3) / x.std() ** 3)


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
            out[col] = self._numeric(col, pd.to_numeric(out[col], errors="coerce").to_numpy(np.float64))
        return out

    def _numeric(self, col: str, x: np.ndarray) -> np.ndarray:
        # A model registered before numerics could be logged has no logged_: it scores as it was fitted.
        return signed_log(x) if col in getattr(self, "logged_", ()) else x

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        self.logged_ = []
        for col in self.numeric:
            raw = pd.to_numeric(pd.Series(frame[col]), errors="coerce").to_numpy(np.float64)
            skew = abs(_skewness(raw))  # above 1: highly skewed, by the usual rule of thumb
            # Clearly less skewed: the log of a 0/1 flag is the same flag, its skewness equal but for rounding.
            if skew > 1 and abs(_skewness(signed_log(raw))) < 0.9 * skew:
                self.logged_.append(col)
        x, y = _sample(self._frame(frame), y, self.seed)
        # One encoder per categorical column (as one encoder over all of them would do), so that each level's
        # weight can be read off its own encoder.
        prep = ColumnTransformer([
            *((f"cat{i}", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), [c])
              for i, c in enumerate(self.categorical)),
            # keep_empty_features: a feature with no value in the training rows (no activity before any lead
            # arrived) stays a column of its own, so the terms below line up with self.numeric.
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                  StandardScaler()), self.numeric),
        ], sparse_threshold=1.0)
        pipeline = make_pipeline(prep, LogisticRegression(max_iter=500, C=1.0)).fit(x, y)
        self._read_terms(prep, pipeline[-1])
        self.center_ = self._terms(x).mean(axis=0)
        return self

    def _read_terms(self, prep, lr) -> None:
        """The fitted pipeline as per-feature terms of the log-odds, so that scoring is a lookup per categorical
        and an affine map per numeric (sklearn's transformers cost about a millisecond a request each)."""
        coef = lr.coef_[0]
        self.intercept_ = float(lr.intercept_[0])
        self.levels_, self.level_terms_, self.unseen_term_ = {}, {}, {}
        for i, col in enumerate(self.categorical):
            encoder, at = prep.named_transformers_[f"cat{i}"], prep.output_indices_[f"cat{i}"]
            levels = list(encoder.categories_[0])
            probe = pd.DataFrame({col: [*levels, "\x00not seen in training"]}, dtype=object)
            terms = np.asarray(encoder.transform(probe) @ coef[at]).ravel()
            self.levels_[col] = pd.Index(levels, dtype=object)
            self.level_terms_[col], self.unseen_term_[col] = terms[:-1], float(terms[-1])
        self.numeric_terms_ = {}
        if self.numeric:
            imputer, scaler = prep.named_transformers_["num"]
            c = coef[prep.output_indices_["num"]]
            n = len(self.numeric)
            flagged = list(getattr(imputer, "indicator_", None).features_) if getattr(imputer, "indicator_", None) else []
            for j, col in enumerate(self.numeric):
                slope = c[j] / scaler.scale_[j]
                k = n + flagged.index(j) if j in flagged else None
                flag = (c[k] / scaler.scale_[k], scaler.mean_[k]) if k is not None else (0.0, 0.0)
                # value term: slope * (x - mean); a missing value: the median's term plus the indicator's
                self.numeric_terms_[col] = (float(imputer.statistics_[j]), float(scaler.mean_[j]), float(slope),
                                            float(flag[0]), float(flag[1]))

    def _terms(self, frame) -> np.ndarray:
        """(leads x features): each feature's term of the log-odds."""
        n = len(frame[(self.categorical or self.numeric)[0]])
        out = np.empty((n, len(self.categorical) + len(self.numeric)))
        for j, col in enumerate(self.categorical):
            out[:, j] = self._level_terms(col, np.asarray(frame[col], dtype=object))
        for j, col in enumerate(self.numeric, start=len(self.categorical)):
            median, mean, slope, flag_slope, flag_mean = self.numeric_terms_[col]
            x = np.asarray(frame[col])
            if x.dtype.kind != "f":
                x = pd.to_numeric(pd.Series(x), errors="coerce").to_numpy(np.float64)
            x = self._numeric(col, x)
            missing = np.isnan(x)
            out[:, j] = slope * (np.where(missing, median, x) - mean) + flag_slope * (missing - flag_mean)
        return out

    def _level_terms(self, col: str, values: np.ndarray) -> np.ndarray:
        """Each value's term, read as text as in fitting (missing: "(missing)"); a handful by dict lookup."""
        if len(values) > 64:
            text = pd.Series(values).astype("string").fillna("(missing)").to_numpy(dtype=object)
            at = self.levels_[col].get_indexer(text)
            return np.where(at >= 0, self.level_terms_[col][np.maximum(at, 0)], self.unseen_term_[col])
        if not hasattr(self, "_lookup"):
            self._lookup = {c: dict(zip(self.levels_[c], self.level_terms_[c])) for c in self.categorical}
        table, unseen = self._lookup[col], self.unseen_term_[col]
        return np.array([table.get("(missing)" if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                                   else v if isinstance(v, str) else str(v), unseen) for v in values])

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lookup", None)  # a cache, rebuilt after loading
        return state

    def predict_proba(self, frame) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.intercept_ + self._terms(frame).sum(axis=1))))

    def contributions(self, frame) -> np.ndarray:
        """(leads x features) log-odds against the average training lead."""
        return self._terms(frame) - self.center_


def _deciles(x: np.ndarray) -> np.ndarray:
    """Decile edges of the values present (none for a column empty in every training row: one bin, missing)."""
    x = x[~np.isnan(x)]
    return np.unique(np.quantile(x, np.linspace(0.1, 0.9, 9))) if len(x) else np.array([])


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
        self.edges_ = {c: _deciles(pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64)) for c in self.numeric}
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
