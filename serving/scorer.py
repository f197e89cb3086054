"""One scorer for batch and API: a model version turns feature rows into probability, score, tier, rank."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from leadscore.errors import DataError

class LeadScorer:
    def __init__(self, model, model_version: str):
        self.model = model
        self.model_version = str(model_version)

    @classmethod
    def from_registry(cls, home, alias: str = "champion") -> LeadScorer:
        from models.registry import load_model

        model, ref = load_model(home, alias)
        return cls(model, ref.version)

    def check_columns(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.model.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"schema drift: model version {self.model_version} needs features {missing[:5]} that this export "
                "does not produce (a mapped column or activity type is gone); fix the config or retrain"
            )

    def score(self, frame: pd.DataFrame, scored_at: datetime, extra_columns: list[str] = ()) -> pd.DataFrame:
        """Scores in the published layout, highest probability first (rank 1)."""
        self.check_columns(frame)
        pred = self.model.predict_frame(frame)
        out = pd.DataFrame({"lead_id": frame["lead_id"].to_numpy()})
        out["probability"] = pred["probability"].to_numpy().round(6)
        out["score"] = pred["score"].to_numpy()
        out["tier"] = pred["tier"].to_numpy()
        order = np.lexsort((out["lead_id"].to_numpy(), -out["probability"].to_numpy()))
        rank = np.empty(len(out), np.int64)
        rank[order] = np.arange(1, len(out) + 1)
        out["rank"] = rank
        out["model_version"] = self.model_version
        out["scored_at"] = pd.Timestamp(scored_at).tz_convert("UTC")  # scored_at must be timezone-aware
        for col in extra_columns:
            if col not in out.columns:
                out[col] = frame[col].to_numpy()
        return out.iloc[order].reset_index(drop=True)
