"""Features of leads scored one at a time or in batch, from a snapshot saved by the last scoring run: the array
rendering of the feature table (:mod:`features.definitions`).

The snapshot holds the event times the table counts (each lead's creation and first win, with its campaign,
source and account; each known lead's activities) and the table itself, so a lead's features here are the
same definitions the batch SQL renders, evaluated with :class:`features.pit.EventIndex` (binary search under
the same strictly-before rule) instead of SQL. An unknown campaign or account has no history (its win rate is
the smoothed prior); a lead the snapshot does not know has no activities. Outcomes are known up to the
snapshot's ``as_of``: for a lead created later, matured leads are counted as of ``as_of``.

Times are int64 microseconds since 1970 (UTC), the batch's own resolution. Batch scoring and the real-time
API both build features here; tests compare them with the training features and with a plain loop.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.definitions import (
    CAPPED_AT_AS_OF,
    ROLES,
    Calendar,
    Column,
    Count,
    DaysSince,
    Feature,
    SmoothedRate,
    from_json,
)
from features.pit import NEVER, EventIndex, KeyCodes, Timeline, event_index
from leadscore.cells import US_PER_DAY
from leadscore.config import Config
from leadscore.errors import DataError
from leadscore.paths import atomic_write, write_text_atomic

DAY_US = US_PER_DAY
SNAPSHOT_FORMAT = 3  # 3: the feature table travels in the snapshot; 2 and before: names parsed from labels


def to_us(values) -> np.ndarray:
    """Timestamps to int64 microseconds since 1970 (UTC); missing -> NEVER. Arrow, pandas or int64 input."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(values.type):
            return values.fill_null(NEVER).to_numpy(zero_copy_only=False).astype(np.int64)
        return values.cast(pa.timestamp("us", "UTC")).cast(pa.int64()).fill_null(NEVER).to_numpy(zero_copy_only=False)
    values = np.asarray(values) if not isinstance(values, pd.Series) else values
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    return to_us(pa.array(pd.Series(values), from_pandas=True))


def snapshot_tables(frame: pd.DataFrame, activities: pa.Table | None, cfg: Config, as_of: datetime,
                    definitions: list[dict], decimal: str = ".") -> tuple[dict, pa.Table, pa.Table | None]:
    """What the online features need, from the feature frame (one row per lead known at ``as_of``), the
    canonical activities and the feature table: (manifest, leads, activities). ``decimal``: how the export wrote
    numbers as text, so the API reads a number sent as text as ingest read it."""
    leads = pa.table({
        "lead_id": pa.array(frame["lead_id"].astype(str).to_numpy(), pa.string()),
        "created_us": to_us(frame["created_at"]),
        **{role: pa.Array.from_pandas(frame[role].astype("string")).cast(pa.string()) for role in ROLES},
        "won_us": to_us(frame["won_at"]),
        "won_in_horizon": pa.array(frame["label"].fillna(0).to_numpy() == 1),
    })
    acts = None
    if activities is not None and activities.num_rows:
        known = pa.array(frame["lead_id"].astype(str).to_numpy(), pa.string())
        acts = activities.select(["lead_id", "type", "occurred_at"])
        acts = acts.filter(pc.and_(pc.is_in(acts["lead_id"], value_set=known),
                                   pc.less_equal(acts["occurred_at"], pa.scalar(pd.Timestamp(as_of), acts["occurred_at"].type))))
        acts = pa.table({"lead_id": acts["lead_id"], "type": acts["type"], "occurred_us": to_us(acts["occurred_at"])})
    manifest = {"format": SNAPSHOT_FORMAT, "as_of": pd.Timestamp(as_of).isoformat(),
                "horizon_days": cfg.label.horizon_days, "timezone": cfg.data.timezone, "features": definitions,
                "decimal": decimal,
                "config_hash": cfg.digest(), "has_activities": acts is not None}
    return manifest, leads, acts


def save_snapshot(folder: Path, manifest: dict, leads: pa.Table, activities: pa.Table | None) -> Path:
    """Files are replaced atomically, the manifest (which readers check first) last."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / "leads.parquet") as tmp:
        pq.write_table(leads, tmp)
    if activities is not None:
        with atomic_write(folder / "activities.parquet") as tmp:
            pq.write_table(activities, tmp)
    write_text_atomic(folder / "snapshot.json", json.dumps(manifest, indent=2))
    return folder


def _encode(column: pa.ChunkedArray) -> tuple[np.ndarray, KeyCodes]:
    """Codes of a string column's values (nulls -1) and the distinct values, by Arrow's dictionary encoding."""
    encoded = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64), KeyCodes(encoded.dictionary)


def calendar(t: np.ndarray, zone: str) -> dict[str, np.ndarray]:
    """Weekday (ISO, 1 = Monday), hour and month of each instant, on the wall clock of ``zone``."""
    local = t
    if zone != "UTC":  # daylight saving: Arrow's zone rules
        zoned = pa.array(t, pa.int64()).cast(pa.timestamp("us", zone))
        local = pc.local_timestamp(zoned).cast(pa.int64()).to_numpy(zero_copy_only=False)
    days = local // DAY_US
    return {"weekday": ((days + 3) % 7 + 1).astype(np.float64),  # 1970-01-01 was a Thursday (4)
            "hour": ((local // 3_600_000_000) % 24).astype(np.float64),
            "month": (local.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(np.float64)}


class OnlineFeatures:
    """A snapshot ready for lookups; :meth:`build` renders its feature table for given leads."""

    @classmethod
    def load(cls, folder: Path) -> OnlineFeatures:
        meta = json.loads((folder / "snapshot.json").read_text(encoding="utf-8"))
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise DataError(f"the scoring snapshot in {folder} was saved by an older leadscore; run "
                            "`leadscore score --config FILE` once to save it again")
        acts = folder / "activities.parquet"
        activities = pq.read_table(acts) if meta.get("has_activities") and acts.is_file() else None
        return cls(meta, pq.read_table(folder / "leads.parquet"), activities)

    def __init__(self, meta: dict, leads_table: pa.Table, activities: pa.Table | None):
        self.meta = meta
        self.table: list[Feature] = from_json(meta["features"])
        self.as_of_us = int(to_us(pa.array([pd.Timestamp(meta["as_of"])]))[0])
        created = to_us(leads_table["created_us"])
        mature = np.where(created != NEVER, created + int(meta["horizon_days"]) * DAY_US, NEVER)
        won = leads_table["won_in_horizon"].to_numpy(zero_copy_only=False)
        self.streams = {"leads": created, "wins": to_us(leads_table["won_us"]), "matured": mature,
                        "matured_wins": np.where(won, mature, NEVER)}
        self.keys = {role: _encode(leads_table[role]) for role in ROLES}
        self.keys["all"] = (np.zeros(len(created), np.int64), KeyCodes(pa.array(["all"])))
        self.lead_index = KeyCodes(leads_table["lead_id"].combine_chunks())
        if activities is not None:  # each activity's lead code and type code, computed once
            self.streams["activities"] = to_us(activities["occurred_us"])
            self.activity_leads = self.lead_index.codes(activities["lead_id"])
            types = pc.dictionary_encode(activities["type"].combine_chunks())
            self.activity_types = KeyCodes(types.dictionary)
            self.activity_type_codes = types.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        self._timelines: dict[str, tuple[Timeline, np.ndarray]] = {}
        self._index: dict[tuple, EventIndex] = {}
        for f in self.table:  # every index the table needs, built once per snapshot
            for need in _needs(f.source):
                self.index(*need)

    def timeline(self, stream: str) -> tuple[Timeline, np.ndarray]:
        """The stream's time line and each event's rank on it, shared by all of the stream's indexes."""
        if stream not in self._timelines:
            times = self.streams.get(stream, np.empty(0, np.int64))
            line = Timeline(times)
            self._timelines[stream] = (line, line.rank(times))
        return self._timelines[stream]

    def index(self, stream: str, key: str, level: str | None = None) -> EventIndex:
        """The events of ``stream`` by ``key`` (activities: of type ``level`` only, if given)."""
        if (stream, key, level) not in self._index:
            line, ranks = self.timeline(stream)
            times = self.streams.get(stream, np.empty(0, np.int64))
            if stream == "activities":
                codes = self.activity_leads if "activities" in self.streams else np.empty(0, np.int64)
                if level is not None and len(codes):
                    mine = self.activity_type_codes == self.activity_types.codes([level])[0]
                    codes = np.where(mine, codes, -1)
                self._index[(stream, key, level)] = event_index(codes, times, self.lead_index, line, ranks)
            else:
                codes, keys = self.keys[key]
                self._index[(stream, key, level)] = event_index(codes, times, keys, line, ranks)
        return self._index[(stream, key, level)]

    def build(self, leads, cfg: Config, feature_names: list[str]) -> dict[str, np.ndarray]:
        """``leads``: canonical columns (lead_id, created_at, campaign, source, account and the mapped columns as
        ``export:<name>``), as a frame or a dict of arrays (``created_at`` may be int64 microseconds).
        Returns columns as arrays: lead_id plus every feature of the table."""
        n = len(leads["lead_id"])
        out = {"lead_id": np.asarray(leads["lead_id"], dtype=object).astype(str)}
        t = to_us(leads["created_at"]) if cfg.data.leads.created_at else np.full(n, NEVER)
        t_known = np.minimum(t, self.as_of_us + 1)  # outcomes are known up to as_of only
        local = calendar(t, self.meta["timezone"]) if any(isinstance(f.source, Calendar) for f in self.table) else {}
        codes: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        ranks: dict[tuple, np.ndarray] = {}

        def rank(stream: str, when: np.ndarray, shift: int = 0) -> np.ndarray:
            capped = stream in CAPPED_AT_AS_OF
            if (stream, capped, shift) not in ranks:
                ranks[(stream, capped, shift)] = self.timeline(stream)[0].rank(when - shift)
            return ranks[(stream, capped, shift)]

        for f in self.table:
            s = f.source
            if isinstance(s, Column):
                values = leads[s.column]
                out[f.name] = (np.asarray(values, dtype=np.float64) if f.kind == "numeric"
                               else np.asarray(values, dtype=object))
                continue
            if isinstance(s, Calendar):
                out[f.name] = local[s.part]
                continue
            if s.key not in codes:
                codes[s.key], missing[s.key] = self._codes(leads, s.key)
            c, absent = codes[s.key], missing[s.key]
            if isinstance(s, Count):
                index = self.index(s.stream, s.key, s.level)
                when = t_known if s.stream in CAPPED_AT_AS_OF else t
                value = index.count_before(c, when, rank(s.stream, when)).astype(np.float64)
                if s.window_days:
                    shift = s.window_days * DAY_US
                    value = value - index.count_before(c, when - shift, rank(s.stream, when, shift))
            elif isinstance(s, DaysSince):
                last = self.index(s.stream, s.key).last_before(c, t)
                # DATE_DIFF('second', ...) in the batch: whole seconds
                value = np.where(last == NEVER, np.nan, (t // 1_000_000 - last // 1_000_000) / 86400.0)
            else:
                value = self._smoothed_rate(s, c, t_known)
            out[f.name] = np.where(absent, np.nan, value)
        absent_names = [f for f in feature_names if f not in out]
        if absent_names:
            raise KeyError(f"the snapshot cannot build features {absent_names[:5]}")
        return out

    def _codes(self, leads, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Each lead's code for ``key`` (the lead itself or a role) and whether its key is missing (a lead with no
        campaign has no campaign history: NaN, not zero)."""
        if key == "lead":
            ids = np.asarray(leads["lead_id"], dtype=object).astype(str)
            return self.lead_index.codes(ids), np.zeros(len(ids), bool)
        values = np.asarray(leads[key], dtype=object)
        absent = pd.isna(values)
        return self.keys[key][1].codes(np.where(absent, None, values)), absent

    def _smoothed_rate(self, s: SmoothedRate, codes: np.ndarray, t_known: np.ndarray) -> np.ndarray:
        zero = np.zeros(len(codes), np.int64)
        den = self.index("matured", "all").count_before(zero, t_known)
        num = self.index("matured_wins", "all").count_before(zero, t_known)
        prior = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        trials = self.index("matured", s.key).count_before(codes, t_known)
        wins = self.index("matured_wins", s.key).count_before(codes, t_known)
        return (wins + s.strength * prior) / (trials + s.strength)


def _needs(s) -> list[tuple]:
    if isinstance(s, Count):
        return [(s.stream, s.key, s.level)]
    if isinstance(s, DaysSince):
        return [(s.stream, s.key, None)]
    if isinstance(s, SmoothedRate):
        return [("matured", "all", None), ("matured_wins", "all", None), ("matured", s.key, None),
                ("matured_wins", s.key, None)]
    return []
