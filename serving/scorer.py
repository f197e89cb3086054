"""One scorer for batch and API: a model version turns feature rows into probability, score, tier, rank, reasons."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from leadscore.errors import DataError


class LeadScorer:
    def __init__(self, model, model_version: str, model_sha256: str | None = None):
        self.model = model
        self.model_version = str(model_version)
        self.model_sha256 = model_sha256  # of the registered files, checked when they were loaded

    @classmethod
    def from_registry(cls, home, alias: str = "champion") -> LeadScorer:
        from models.registry import load_model

        model, ref = load_model(home, alias)
        return cls(model, ref.version, ref.sha256)

    def check_schema(self, categorical: list[str], numeric: list[str]) -> None:
        """Schema drift stops scoring: a feature the model needs is gone, or changed between text and number."""
        enc = self.model.encoder
        have = set(categorical) | set(numeric)
        missing = [c for c in self.model.features if c not in have]
        if missing:
            raise DataError(
                f"schema drift: model version {self.model_version} needs features {missing[:5]} that this export "
                "does not produce (a mapped column or activity type is gone); fix the config or retrain"
            )
        changed = sorted({c for c in enc.categorical if c in numeric} | {c for c in enc.numeric if c in categorical})
        if changed:
            raise DataError(f"schema drift: features {changed[:5]} changed type (text <-> number) since model version "
                            f"{self.model_version} was trained; map them as before or retrain")

    def input_hash(self, frame: pd.DataFrame) -> np.ndarray:
        """A hash of each lead's model inputs: equal hashes and model version mean an equal score."""
        return pd.util.hash_pandas_object(frame[self.model.features], index=False).to_numpy().view(np.int64)

    def predict(self, columns, reason_tiers: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
        """probability, score, tier (and reasons for ``reason_tiers``) per row of a feature frame or a dict of
        feature arrays; the batch and the real-time API both come through here."""
        missing = [c for c in self.model.features if c not in columns]
        if missing:
            raise DataError(f"schema drift: model version {self.model_version} needs features {missing[:5]} "
                            "that are not in the leads given")
        return self.model.predict_frame(columns, reason_tiers=tuple(reason_tiers))

    def score(self, frame: pd.DataFrame, scored_at: datetime, reason_tiers: tuple[str, ...] = ("A", "B"),
              extra_columns: list[str] = ()) -> pd.DataFrame:
        """Scores in the published layout, highest probability first (rank 1); ties ordered by lead_id."""
        pred = self.predict(frame, reason_tiers)
        out = pd.DataFrame({"lead_id": frame["lead_id"].to_numpy()})
        out["probability"] = pred["probability"].to_numpy().round(6)
        out["score"] = pred["score"].to_numpy()
        out["tier"] = pred["tier"].to_numpy()
        order = np.lexsort((out["lead_id"].to_numpy().astype(str), -out["probability"].to_numpy()))
        rank = np.empty(len(out), np.int64)
        rank[order] = np.arange(1, len(out) + 1)
        out["rank"] = rank
        out["reasons"] = pred["reasons"].to_numpy() if "reasons" in pred else None
        out["model_version"] = self.model_version
        out["scored_at"] = pd.Timestamp(scored_at).tz_convert("UTC")  # scored_at must be timezone-aware
        for col in extra_columns:
            if col not in out.columns:
                out[col] = frame[col].to_numpy()
        return out.iloc[order].reset_index(drop=True)

    def drift(self, frame: pd.DataFrame, probability: np.ndarray) -> dict[str, float] | None:
        """PSI per feature and for the score against the reference saved with the model (None for models
        trained before references were kept)."""
        reference = getattr(self.model, "reference", None)
        if reference is None or len(frame) == 0:
            return None
        return reference.compare(frame, probability)
