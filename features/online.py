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

import copy
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
    Age,
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
from leadscore.paths import write_parquet_atomic, write_text_atomic

DAY_US = US_PER_DAY
SNAPSHOT_FORMAT = 4  # 4: stage changes and the now-table; 3: the feature table; 2 and before: names from labels


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
                    definitions: list[dict], decimal: str = ".", now_definitions: list[dict] | None = None,
                    stages: pa.Table | None = None) -> tuple[dict, pa.Table, pa.Table | None, pa.Table | None]:
    """What the online features need, from the feature frame (one row per lead known at ``as_of``), the
    canonical activities and stage changes, and the feature tables (at arrival; and, for the model of a win from
    now on, at any moment): (manifest, leads, activities, stages). ``decimal``: how the export wrote numbers as
    text, so the API reads a number sent as text as ingest read it."""
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
    changes = None
    if stages is not None and stages.num_rows:  # the stage changes short of a decision, up to as_of
        decided = pa.array([*cfg.won_stages, *cfg.lost_stages], pa.string())
        s = stages.filter(pc.and_(pc.invert(pc.is_in(stages["stage"], value_set=decided)),
                                  pc.less_equal(stages["occurred_at"],
                                                pa.scalar(pd.Timestamp(as_of), stages["occurred_at"].type))))
        changes = pa.table({"lead_id": s["lead_id"], "type": s["stage"], "occurred_us": to_us(s["occurred_at"])})
    manifest = {"format": SNAPSHOT_FORMAT, "as_of": pd.Timestamp(as_of).isoformat(),
                "horizon_days": cfg.label.horizon_days, "timezone": cfg.data.timezone, "features": definitions,
                "now_features": now_definitions or [], "decimal": decimal, "config_hash": cfg.digest(),
                "has_activities": acts is not None, "has_stages": changes is not None}
    return manifest, leads, acts, changes


def save_snapshot(folder: Path, manifest: dict, leads: pa.Table, activities: pa.Table | None,
                  stages: pa.Table | None = None) -> Path:
    """Files are replaced atomically, the manifest (which readers check first) last."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("leads", leads), ("activities", activities), ("stages", stages)):
        if table is not None:
            write_parquet_atomic(table, folder / f"{name}.parquet")
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
        acts, changes = folder / "activities.parquet", folder / "stages.parquet"
        activities = pq.read_table(acts) if meta.get("has_activities") and acts.is_file() else None
        stages = pq.read_table(changes) if meta.get("has_stages") and changes.is_file() else None
        return cls(meta, pq.read_table(folder / "leads.parquet"), activities, stages)

    def __init__(self, meta: dict, leads_table: pa.Table, activities: pa.Table | None,
                 stages: pa.Table | None = None):
        self.meta = meta
        self.tables: dict[str, list[Feature]] = {"fit": from_json(meta["features"]),
                                                 "now": from_json(meta.get("now_features", []))}
        self.table = self.tables["fit"]
        self.as_of_us = int(to_us(pa.array([pd.Timestamp(meta["as_of"])]))[0])
        created = to_us(leads_table["created_us"])
        self.created = created
        mature = np.where(created != NEVER, created + int(meta["horizon_days"]) * DAY_US, NEVER)
        won = leads_table["won_in_horizon"].to_numpy(zero_copy_only=False)
        self.streams = {"leads": created, "wins": to_us(leads_table["won_us"]), "matured": mature,
                        "matured_wins": np.where(won, mature, NEVER)}
        self.keys = {role: _encode(leads_table[role]) for role in ROLES}
        self.keys["all"] = (np.zeros(len(created), np.int64), KeyCodes(pa.array(["all"])))
        self.lead_index = KeyCodes(leads_table["lead_id"].combine_chunks())
        self.own: dict[str, tuple[np.ndarray, KeyCodes, np.ndarray]] = {}  # per lead: lead code, level codes
        for stream, events in (("activities", activities), ("stages", stages)):
            if events is not None:  # each event's lead code and type code, computed once
                self.streams[stream] = to_us(events["occurred_us"])
                types = pc.dictionary_encode(events["type"].combine_chunks())
                self.own[stream] = (self.lead_index.codes(events["lead_id"]), KeyCodes(types.dictionary),
                                    types.indices.fill_null(-1).to_numpy(zero_copy_only=False))
        self._timelines: dict[str, tuple[Timeline, np.ndarray]] = {}
        self._index: dict[tuple, EventIndex] = {}
        for table in self.tables.values():  # every index the tables need, built once per snapshot
            for f in table:
                for need in _needs(f.source):
                    self.index(*need)

    def own_events(self, parts: list) -> list[dict]:
        """The leads' own events (activities, stage changes) of each part of the leads (``parts``: lead ids),
        for :meth:`with_own`: a cluster sends each part its own, and every part the same :meth:`without_own`.
        An event of a lead in no part goes nowhere."""
        part_of = np.full(len(self.created), -1, np.int64)
        for i, ids in enumerate(parts):
            codes = self.lead_index.codes(np.asarray(ids, dtype=object).astype(str))
            part_of[codes[codes >= 0]] = i
        out: list[dict] = [{} for _ in parts]
        for stream, (lead_codes, _, type_codes) in self.own.items():
            where = np.where(lead_codes >= 0, part_of[np.maximum(lead_codes, 0)], -1)
            order = np.argsort(where, kind="stable")  # each part's events in their snapshot order
            bounds = np.searchsorted(where[order], np.arange(len(parts) + 1))
            times = self.streams[stream]
            for i in range(len(parts)):
                rows = order[bounds[i]:bounds[i + 1]]
                out[i][stream] = (times[rows], lead_codes[rows], type_codes[rows])
        return out

    def without_own(self) -> OnlineFeatures:
        """This snapshot without the leads' own events: what every part of the leads shares (every lead's
        history by campaign, source and account, the lead index, the feature tables). The own events are most of
        a snapshot: 7.3M activities against 1M leads in the 1M-lead bench."""
        return self.with_own({stream: (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
                              for stream in self.own})

    def with_own(self, events: dict) -> OnlineFeatures:
        """A copy with ``events`` (:meth:`own_events` of one part) as the leads' own events: the same features as
        the whole snapshot for the leads of that part. Shared arrays are not copied; the own streams' indexes are
        built when first asked for."""
        part = copy.copy(self)
        part.streams = {**self.streams, **{stream: e[0] for stream, e in events.items()}}
        part.own = {stream: (e[1], self.own[stream][1], e[2]) for stream, e in events.items()}
        part._timelines = {k: v for k, v in self._timelines.items() if k not in events}
        part._index = {k: v for k, v in self._index.items() if k[0] not in events}
        return part

    def timeline(self, stream: str) -> tuple[Timeline, np.ndarray]:
        """The stream's time line and each event's rank on it, shared by all of the stream's indexes."""
        if stream not in self._timelines:
            times = self.streams.get(stream, np.empty(0, np.int64))
            line = Timeline(times)
            self._timelines[stream] = (line, line.rank(times))
        return self._timelines[stream]

    def index(self, stream: str, key: str, level: str | None = None) -> EventIndex:
        """The events of ``stream`` by ``key`` (a lead's own activities or stage changes: of type ``level`` only,
        if given)."""
        if (stream, key, level) not in self._index:
            line, ranks = self.timeline(stream)
            times = self.streams.get(stream, np.empty(0, np.int64))
            if stream in ("activities", "stages"):
                codes, types, type_codes = self.own.get(stream, (np.empty(0, np.int64), None, None))
                if level is not None and len(codes):
                    codes = np.where(type_codes == types.codes([level])[0], codes, -1)
                self._index[(stream, key, level)] = event_index(codes, times, self.lead_index, line, ranks)
            else:
                codes, keys = self.keys[key]
                self._index[(stream, key, level)] = event_index(codes, times, keys, line, ranks)
        return self._index[(stream, key, level)]

    def build(self, leads, cfg: Config, feature_names: list[str], table: str = "fit",
              at: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``leads``: canonical columns (lead_id, created_at, campaign, source, account and the mapped columns as
        ``export:<name>``), as a frame or a dict of arrays (``created_at`` may be int64 microseconds). ``table``:
        "fit" (each lead at its arrival) or "now" (at the moments ``at``, microseconds; default: arrival).
        Returns columns as arrays: lead_id, the moment each row describes (``created_at``; and ``at`` for the
        now-table, both int64 microseconds) and every feature of the table."""
        features = self.tables[table]
        n = len(leads["lead_id"])
        out = {"lead_id": np.asarray(leads["lead_id"], dtype=object).astype(str)}
        created = to_us(leads["created_at"]) if cfg.data.leads.created_at else np.full(n, NEVER)
        t = created if at is None else np.asarray(at, np.int64)
        out["created_at"] = created
        if table == "now":
            out["at"] = t
        t_known = np.minimum(t, self.as_of_us + 1)  # outcomes are known up to as_of only
        local = calendar(created, self.meta["timezone"]) if any(isinstance(f.source, Calendar) for f in features) else {}
        codes: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        ranks: dict[tuple, np.ndarray] = {}
        totals: dict[tuple, np.ndarray] = {}
        prior = None

        def rank(stream: str, when: np.ndarray, shift: int = 0) -> np.ndarray:
            capped = stream in CAPPED_AT_AS_OF
            if (stream, capped, shift) not in ranks:
                ranks[(stream, capped, shift)] = self.timeline(stream)[0].rank(when - shift)
            return ranks[(stream, capped, shift)]

        for f in features:
            s = f.source
            if isinstance(s, Age):
                out[f.name] = (t // 1_000_000 - created // 1_000_000) / 86400.0  # DATE_DIFF('second', ...)
                continue
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
                so_far = (s.stream, s.key, s.level)  # the same for every window of one stream and level
                if so_far not in totals:
                    totals[so_far] = index.count_before(c, when, rank(s.stream, when)).astype(np.float64)
                value = totals[so_far]
                if s.window_days:
                    shift = s.window_days * DAY_US
                    value = value - index.count_before(c, when - shift, rank(s.stream, when, shift))
            elif isinstance(s, DaysSince):
                last = self.index(s.stream, s.key, s.level).last_before(c, t)
                # DATE_DIFF('second', ...) in the batch: whole seconds
                value = np.where(last == NEVER, np.nan, (t // 1_000_000 - last // 1_000_000) / 86400.0)
            else:
                if prior is None:  # the win rate of all matured leads: once per build, for every role
                    prior = self._prior(t_known)
                value = self._smoothed_rate(s, c, t_known, prior)
            out[f.name] = np.where(absent, np.nan, value)
        absent_names = [f for f in feature_names if f not in out]
        if absent_names:
            raise KeyError(f"the snapshot cannot build features {absent_names[:5]}")
        return out

    def moments(self, lead_ids, created_us: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the real-time API: (created_at, moment, known) per lead. A lead the snapshot knows is described
        as the snapshot knows it (its own created_at, every event up to as_of: the moment just after as_of), as
        the batch scored it; a new lead at its arrival (age 0)."""
        code = self.lead_index.codes(np.asarray(lead_ids, dtype=object))
        known = code >= 0
        created = np.where(known, self.created[np.maximum(code, 0)], np.asarray(created_us, np.int64))
        return created, np.where(known, self.as_of_us + 1, created), known

    def _codes(self, leads, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Each lead's code for ``key`` (the lead itself or a role) and whether its key is missing (a lead with no
        campaign has no campaign history: NaN, not zero)."""
        if key == "lead":
            ids = np.asarray(leads["lead_id"], dtype=object).astype(str)
            return self.lead_index.codes(ids), np.zeros(len(ids), bool)
        values = np.asarray(leads[key], dtype=object)
        absent = pd.isna(values)
        return self.keys[key][1].codes(np.where(absent, None, values)), absent

    def _prior(self, t_known: np.ndarray) -> np.ndarray:
        zero = np.zeros(len(t_known), np.int64)
        den = self.index("matured", "all").count_before(zero, t_known)
        num = self.index("matured_wins", "all").count_before(zero, t_known)
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    def _smoothed_rate(self, s: SmoothedRate, codes: np.ndarray, t_known: np.ndarray, prior: np.ndarray) -> np.ndarray:
        trials = self.index("matured", s.key).count_before(codes, t_known)
        wins = self.index("matured_wins", s.key).count_before(codes, t_known)
        return (wins + s.strength * prior) / (trials + s.strength)


def _needs(s) -> list[tuple]:
    if isinstance(s, Count):
        return [(s.stream, s.key, s.level)]
    if isinstance(s, DaysSince):
        return [(s.stream, s.key, s.level)]
    if isinstance(s, SmoothedRate):
        return [("matured", "all", None), ("matured_wins", "all", None), ("matured", s.key, None),
                ("matured_wins", s.key, None)]
    return []
