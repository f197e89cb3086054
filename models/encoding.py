"""The fitted preprocessing that travels inside the logged model, so scoring cannot drift from training."""

from __future__ import annotations

import numpy as np
import pandas as pd


class FeatureEncoder:
    """Turns a feature frame into the exact matrix the booster was trained on.

    Categorical levels are learned on the training rows (the ``max_levels`` most frequent); a value not seen
    in training becomes missing, which the booster handles. Numerics become float64.
    """

    def __init__(self, categorical: list[str], numeric: list[str], max_levels: int = 500):
        self.categorical = categorical
        self.numeric = numeric
        self.max_levels = max_levels

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        self.levels_ = {}
        for col in self.categorical:
            counts = frame[col].astype("string").value_counts(dropna=True)
            top = counts.iloc[: self.max_levels].index
            self.levels_[col] = sorted(str(v) for v in top)
        self.features_ = [*self.categorical, *self.numeric]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not hasattr(self, "levels_"):
            raise RuntimeError("FeatureEncoder.transform called before fit")
        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise KeyError(f"feature frame lacks columns {missing}")
        out = {}
        for col in self.categorical:
            levels = pd.Index(self.levels_[col], dtype=object)
            codes = levels.get_indexer(frame[col].astype("string").astype(object).to_numpy())  # unseen or missing: -1
            out[col] = pd.Categorical.from_codes(codes, categories=levels)
        for col in self.numeric:
            out[col] = pd.to_numeric(frame[col], errors="coerce").astype(np.float64).to_numpy()
        return pd.DataFrame(out, index=frame.index)[self.features_]

    def matrix(self, frame) -> np.ndarray:
        """The same values as ``transform`` as one float matrix (categories as their codes, unseen as NaN): what
        the booster predicts on, without building pandas categoricals (much faster for a handful of leads)."""
        if not hasattr(self, "levels_"):
            raise RuntimeError("FeatureEncoder.matrix called before fit")
        if not hasattr(self, "_index"):  # built once per loaded model
            self._index = {col: pd.Index(levels, dtype=object) for col, levels in self.levels_.items()}
        n = len(frame[self.features_[0]]) if self.features_ else len(frame)  # a frame, or a dict of arrays
        out = np.empty((n, len(self.features_)), np.float64)
        for j, col in enumerate(self.categorical):
            values = frame[col]
            if isinstance(values, np.ndarray):  # columns as plain arrays (the real-time API)
                codes = self._codes(col, values).astype(np.float64)
                codes[codes < 0] = np.nan
                out[:, j] = codes
                continue
            if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
                values = values.astype("string")  # numbers in a text column compare as their text, as in transform
            codes = self._index[col].get_indexer(values.to_numpy(dtype=object)).astype(np.float64)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        for j, col in enumerate(self.numeric, start=len(self.categorical)):
            values = frame[col]
            if isinstance(values, np.ndarray):
                out[:, j] = values
            elif values.dtype.kind == "f":
                out[:, j] = values.to_numpy()
            else:
                out[:, j] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def _codes(self, col: str, values: np.ndarray) -> np.ndarray:
        if len(values) > 64:
            return self._index[col].get_indexer(values.astype(object))
        if not hasattr(self, "_lookup"):
            self._lookup = {c: {v: i for i, v in enumerate(levels)} for c, levels in self.levels_.items()}
        get = self._lookup[col].get
        return np.fromiter((get(v, -1) if isinstance(v, str) else -1 for v in values), np.int64, len(values))

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_index", None)  # caches, rebuilt after loading
        state.pop("_lookup", None)
        return state
