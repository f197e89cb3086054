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
