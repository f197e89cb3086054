"""One scorer for batch and API: a model version turns feature rows into probability, score, tier, rank, reasons."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from leadscore.cluster import again_if_lost, cut, map_parts
from leadscore.errors import DataError


class LeadScorer:
    def __init__(self, model, model_version: str, model_sha256: str | None = None, segment: str | None = None,
                 segments: dict[str, LeadScorer] | None = None):
        self.model = model
        self.model_version = str(model_version)
        self.model_sha256 = model_sha256  # of the registered files, checked when they were loaded
        self.segment = segment  # the segment this model is for (None: the global model)
        # Segment -> its own scorer; a row whose ``segment`` column names one is scored by it.
        self.segments = dict(segments or {})

    @classmethod
    def from_registry(cls, home, alias: str = "champion", segments: tuple[str, ...] = ()) -> LeadScorer:
        """The global model at ``alias``, with the champion of each of ``segments`` that has one."""
        from models.registry import champion_version, load_model, segment_model_name

        model, ref = load_model(home, alias)
        own = {}
        for name in segments:
            if champion_version(home, segment_model_name(name)) is not None:
                seg_model, seg_ref = load_model(home, name=segment_model_name(name))
                own[name] = cls(seg_model, seg_ref.version, seg_ref.sha256, segment=name)
        return cls(model, ref.version, ref.sha256, segments=own)

    @property
    def label(self) -> str:
        """What a published row says scored it: the version, or ``<segment>/<version>`` for a segment's model."""
        return self.model_version if self.segment is None else f"{self.segment}/{self.model_version}"

    def labels_for(self, segment) -> np.ndarray:
        """The label of the model that scores each row, given each row's segment (None: no segment)."""
        out = np.full(len(segment), self.label, dtype=object)
        for name, scorer in self.segments.items():
            out[np.asarray(segment, dtype=object) == name] = scorer.label
        return out

    def _all(self) -> list[LeadScorer]:
        return [self, *self.segments.values()]

    @property
    def now_model(self):
        """The model of a win from now on (None: a snapshot export, or a model trained before it existed)."""
        return getattr(self.model, "now", None)

    @property
    def fit_features(self) -> list[str]:
        """Every feature a fit model reads (the global one's first, then the segments')."""
        return list(dict.fromkeys(f for scorer in self._all() for f in scorer.model.features))

    @property
    def now_features(self) -> list[str]:
        """Every feature a model of a win from now on reads."""
        return list(dict.fromkeys(f for scorer in self._all() if scorer.now_model is not None
                                  for f in scorer.now_model.features))

    @property
    def features(self) -> list[str]:
        """Every feature any model reads (the fit models' first)."""
        return list(dict.fromkeys([*self.fit_features, *self.now_features]))

    def check_schema(self, categorical: list[str], numeric: list[str], now_features: list[str] | None = None) -> None:
        """Schema drift stops scoring: a feature a model needs is gone, or changed between text and number.
        ``now_features``: the features the landmark rows have (checked against the model of a win from now on)."""
        for scorer in self.segments.values():
            scorer.check_schema(categorical, numeric, now_features)
        enc = self.model.encoder
        have = set(categorical) | set(numeric)
        missing = [c for c in self.model.features if c not in have]
        if now_features is not None and self.now_model is not None:
            missing += [c for c in self.now_model.features if c not in set(now_features)]
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
        """A hash of each lead's model inputs: equal hashes and model version mean an equal score. Time since an
        event (a lead's age, days since its last activity) counts in whole days, so rescoring a few hours
        later with --since-last skips leads where nothing happened. A lead's hash covers the inputs of the model
        that scores it (its segment's, else the global one's): retiring a segment's model, whose features the
        global model may not read, changes only its leads' hashes."""
        segment = frame["segment"] if self.segments and "segment" in frame.columns else None
        if segment is None:
            return self._own_hash(frame)
        segment = np.asarray(segment, dtype=object)
        out = np.zeros(len(frame), np.int64)
        rest = ~np.isin(segment, list(self.segments))
        for scorer, rows in [(self, rest), *((sc, segment == name) for name, sc in self.segments.items())]:
            index = np.flatnonzero(rows)
            if len(index):
                out[index] = scorer._own_hash(frame.iloc[index])
        return out

    def _own_hash(self, frame: pd.DataFrame) -> np.ndarray:
        own = [*self.model.features, *(self.now_model.features if self.now_model is not None else [])]
        columns = frame[list(dict.fromkeys(own))].copy()
        now = self.now_model
        sources = getattr(getattr(now, "reasons", None), "sources", {}) if now is not None else {}
        for name, source in sources.items():
            if source.get("type") in ("Age", "DaysSince") and name in columns:
                columns[name] = np.floor(columns[name].to_numpy(np.float64))
        return pd.util.hash_pandas_object(columns, index=False).to_numpy().view(np.int64)

    def predict(self, columns, reason_tiers: tuple[str, ...] = ("A", "B"), use_now: bool = True) -> dict[str, np.ndarray]:
        """:meth:`predict_one` by the model of each row's segment (a ``segment`` column, if any): rows of a segment
        with a model of its own by that model, the others by the global one. ``model_version`` says which."""
        segment = columns["segment"] if self.segments and "segment" in columns else None
        if segment is None or len(segment) == 0:
            return self.predict_one(columns, reason_tiers, use_now)
        segment = np.asarray(segment, dtype=object)
        parts = []
        rest = ~np.isin(segment, list(self.segments))
        for scorer, rows in [(self, rest), *((sc, segment == name) for name, sc in self.segments.items())]:
            index = np.flatnonzero(rows)
            if len(index):
                sub = (columns.iloc[index] if isinstance(columns, pd.DataFrame)
                       else {k: np.asarray(v)[index] for k, v in columns.items()})
                pred = scorer.predict_one(sub, reason_tiers, use_now)
                parts.append(pd.DataFrame({k: pd.Series(v, index=index, dtype=object if v.dtype == object else v.dtype)
                                           for k, v in pred.items()}))
        merged = pd.concat(parts).sort_index()
        return {k: merged[k].to_numpy() for k in merged.columns}

    def predict_one(self, columns, reason_tiers: tuple[str, ...] = ("A", "B"),
                    use_now: bool = True) -> dict[str, np.ndarray]:
        """Per row of a feature frame or a dict of feature arrays (fit and now features side by side): the
        ``probability`` of a win from now on with its score, tier and reasons (for ``reason_tiers``), and ``fit``,
        the chance at arrival, with ``fit_reasons``. Without a model of a win from now on (snapshot exports),
        ``probability`` is the fit. The batch and the real-time API both come through here.

        With the model of a win from now on, both probabilities carry the campaign outcome factors the registered
        model was trained with (what its campaigns' young leads did since they arrived). ``use_now=False`` gives
        the fit model alone, each lead as it was seen at arrival: the campaign report applies its own factors."""
        now = self.now_model if use_now else None
        factors = getattr(self.model, "outcome_factors", None) if now is not None else None
        missing = [c for c in [*self.model.features, *(now.features if now is not None else [])] if c not in columns]
        if missing:
            raise DataError(f"schema drift: model version {self.model_version} needs features {missing[:5]} "
                            "that are not in the leads given")
        if now is None:
            out = self.model.predict_columns(columns, reason_tiers=tuple(reason_tiers))
            fit = out
        else:
            out = now.predict_columns(columns, reason_tiers=tuple(reason_tiers), factors=factors)
            explain = np.isin(out["tier"], list(reason_tiers)) if reason_tiers else None
            fit = self.model.predict_columns(columns, explain=explain, factors=factors)
        out["fit"] = fit["probability"]
        if "reasons" in fit:
            out["fit_reasons"] = fit["reasons"]
        out["model_version"] = np.full(len(out["probability"]), self.label, dtype=object)
        return out

    def predict_on(self, client, frame: pd.DataFrame, reason_tiers: tuple[str, ...] = ("A", "B"),
                   use_now: bool = True, rows_per_partition: int = 100_000) -> dict[str, np.ndarray]:
        """:meth:`predict` partition by partition on a Dask cluster (this very scorer, sent to each worker once;
        the rows scattered to the workers, not embedded in the task graph): every row is scored alone, so the
        result equals :meth:`predict`'s."""
        columns = [c for c in dict.fromkeys([*self.features, "campaign", "segment"]) if c in frame.columns]
        rows = frame[columns].reset_index(drop=True)
        parts = cut(rows, rows_per_partition)

        def attempt():
            scattered = client.scatter(self, broadcast=True, hash=False, direct=True)
            return pd.concat(map_parts(client, _prediction_frame, parts, scorer=scattered, reason_tiers=reason_tiers,
                                       use_now=use_now))

        out = again_if_lost(client, "scoring leads", attempt)
        return {c: out[c].to_numpy() for c in out.columns}

    def score(self, frame: pd.DataFrame, scored_at: datetime, reason_tiers: tuple[str, ...] = ("A", "B"),
              extra_columns: list[str] = (), use_now: bool = True, client=None) -> pd.DataFrame:
        """Scores in the published layout, highest probability first (rank 1); ties ordered by lead_id. With a
        Dask ``client``, the rows are scored on its workers."""
        return ranked(self.rows(frame, scored_at, reason_tiers, extra_columns, use_now, client))

    def rows(self, frame: pd.DataFrame, scored_at: datetime, reason_tiers: tuple[str, ...] = ("A", "B"),
             extra_columns: list[str] = (), use_now: bool = True, client=None) -> pd.DataFrame:
        """:meth:`score`'s rows in the order given, without ranks (parts scored apart are ranked together)."""
        pred = (self.predict(frame, reason_tiers, use_now) if client is None or len(frame) == 0 else
                self.predict_on(client, frame, reason_tiers, use_now))
        out = pd.DataFrame({"lead_id": frame["lead_id"].to_numpy()})
        out["probability"] = pred["probability"].round(6)
        out["fit"] = pred["fit"].round(6)
        out["score"] = pred["score"]
        out["tier"] = pred["tier"]
        out["reasons"] = pred.get("reasons")
        out["fit_reasons"] = pred.get("fit_reasons")
        out["model_version"] = pred["model_version"]
        out["scored_at"] = pd.Timestamp(scored_at).tz_convert("UTC")  # scored_at must be timezone-aware
        for col in extra_columns:
            if col not in out.columns:
                out[col] = frame[col].to_numpy()
        return out

    def drift(self, frame: pd.DataFrame, probability: np.ndarray) -> dict[str, float] | None:
        """PSI per feature and for the score against the reference saved with the model (None for models
        trained before references were kept)."""
        reference = getattr(self.model, "reference", None)
        if reference is None or len(frame) == 0:
            return None
        return reference.compare(frame, probability)


def _prediction_frame(part: pd.DataFrame, scorer: LeadScorer, reason_tiers: tuple[str, ...], use_now: bool):
    pred = scorer.predict(part, reason_tiers, use_now)
    return pd.DataFrame({k: pd.Series(v, index=part.index, dtype=object if v.dtype == object else v.dtype)
                         for k, v in pred.items()})


def ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` highest probability first, ties by lead_id, with ``rank`` (1 = best) after the tier."""
    order = np.lexsort((rows["lead_id"].to_numpy().astype(str), -rows["probability"].to_numpy()))
    out = rows.drop(columns=["rank"], errors="ignore").iloc[order].reset_index(drop=True)
    out.insert(out.columns.get_loc("tier") + 1, "rank", np.arange(1, len(out) + 1, dtype=np.int64))
    return out
