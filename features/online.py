"""Features for leads that arrive one at a time (the real-time API), from a snapshot saved by the last scoring run.

The snapshot holds the event times that the batch features count (each campaign's, source's and account's
leads, wins and matured leads; each known lead's activities), so a lead's features here are the batch
features' definitions evaluated with sorted arrays and binary search instead of SQL:

- the point-in-time rule of ``features.pit.known_at``: an event counts if it happened strictly before the
  lead's ``created_at``; a trailing window of ``w`` days holds events at or after ``created_at - w days``;
- a NULL campaign/source/account gives NULL counts; an unknown one gives zero leads and wins, and a win rate
  equal to the smoothed prior;
- outcomes are only known up to the snapshot's ``as_of``: for a lead created later, matured leads are
  counted as of ``as_of``.

Times are int64 microseconds since 1970 (UTC), the batch's own resolution. ``tests/test_api.py`` checks that these features and the scores
built on them equal the batch ones for the same leads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq

from features.build import attribute_features
from leadscore.config import Config
from leadscore.contract import export_column
from leadscore.errors import DataError
from leadscore.paths import atomic_write, write_text_atomic

DAY_US = 86_400_000_000
NEVER = np.iinfo(np.int64).min  # "no time": a missing timestamp, or no event
ROLES = ("campaign", "source", "account")
SNAPSHOT_FORMAT = 2  # times in microseconds; 1 (before) held milliseconds packed beside the key


def _us(values) -> np.ndarray:
    """Timestamps to int64 microseconds since 1970 (UTC); missing -> NEVER. Arrow, pandas or int64 input."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(values.type):
            return values.fill_null(NEVER).to_numpy(zero_copy_only=False).astype(np.int64)
        return values.cast(pa.timestamp("us", "UTC")).cast(pa.int64()).fill_null(NEVER).to_numpy(zero_copy_only=False)
    values = np.asarray(values) if not isinstance(values, pd.Series) else values
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    return _us(pa.array(pd.Series(values), from_pandas=True))


def snapshot_tables(frame: pd.DataFrame, activities: pa.Table | None, cfg: Config, as_of: datetime,
                    labels: dict[str, str]) -> tuple[dict, pa.Table, pa.Table | None]:
    """What the online features need, from the feature frame (one row per lead known at ``as_of``) and the
    canonical activities: (manifest, leads, activities)."""
    leads = pa.table({
        "lead_id": pa.array(frame["lead_id"].astype(str).to_numpy(), pa.string()),
        "created_us": _us(frame["created_at"]),
        **{role: pa.Array.from_pandas(frame[role].astype("string")).cast(pa.string()) for role in ROLES},
        "won_us": _us(frame["won_at"]),
        "won_in_horizon": pa.array(frame["label"].fillna(0).to_numpy() == 1),
    })
    acts = None
    if activities is not None and activities.num_rows:
        import pyarrow.compute as pc

        known = pa.array(frame["lead_id"].astype(str).to_numpy(), pa.string())
        acts = activities.select(["lead_id", "type", "occurred_at"])
        acts = acts.filter(pc.and_(pc.is_in(acts["lead_id"], value_set=known),
                                   pc.less_equal(acts["occurred_at"], pa.scalar(pd.Timestamp(as_of), acts["occurred_at"].type))))
        acts = pa.table({"lead_id": acts["lead_id"], "type": acts["type"], "occurred_us": _us(acts["occurred_at"])})
    types = {}  # activity type -> feature key, as build_features named them
    for f, text in labels.items():
        m = re.fullmatch(r"act_(.+)_(\d+)d", f)
        if m and m.group(1) != "any":
            types[text.rsplit(" in the ", 1)[0]] = m.group(1)
    manifest = {"format": SNAPSHOT_FORMAT, "as_of": pd.Timestamp(as_of).isoformat(),
                "horizon_days": cfg.label.horizon_days, "prior_strength": cfg.features.prior_strength,
                "windows_days": sorted(set(cfg.features.windows_days)), "timezone": cfg.data.timezone,
                "activity_types": types, "config_hash": cfg.digest(), "has_activities": acts is not None}
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


class KeyCodes:
    """Exact-match codes of keys: a dict for a handful of values (a request), Arrow's hash table for many."""

    def __init__(self, keys):
        self.arrow = keys if isinstance(keys, pa.Array) else pa.array(list(keys), pa.string())
        self._lookup: dict | None = None  # built on the first small request, never for a batch

    @property
    def lookup(self) -> dict:
        if self._lookup is None:
            self._lookup = {k: i for i, k in enumerate(self.arrow.to_pylist())}
        return self._lookup

    def __len__(self) -> int:
        return len(self.arrow)

    def codes(self, values) -> np.ndarray:
        """Code of each value, -1 for a missing or unknown one."""
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            found = pa.compute.index_in(values, value_set=self.arrow)
            return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        values = np.asarray(values, dtype=object)
        if len(values) <= 64:
            get = self.lookup.get
            return np.fromiter((get(v, -1) if isinstance(v, str) else -1 for v in values), np.int64, len(values))
        return self.codes(pa.array(values, pa.string(), from_pandas=True))


@dataclass
class _Events:
    """One event stream, for counting by binary search: events sorted by (key code, time), each as one int64,
    ``code * width + rank of its time among the stream's distinct times``. Ranks, not times, so that no time
    range can overflow the key (``width`` is the number of distinct times plus one)."""

    keys: KeyCodes
    times: np.ndarray  # the stream's distinct event times, sorted (microseconds)
    composite: np.ndarray

    def __post_init__(self):
        self.width = len(self.times) + 1
        if (len(self.keys) + 1) * self.width >= 1 << 62:
            raise OverflowError("too many keys and distinct times for one event stream")
        # Where each key's events start: one lookup instead of a second binary search per query.
        self.starts = np.searchsorted(self.composite, np.arange(len(self.keys) + 1, dtype=np.int64) * self.width)

    def _position(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index of the first event of each code at or after t."""
        needles = np.maximum(codes, 0).astype(np.int64) * self.width + np.searchsorted(self.times, t, side="left")
        if len(needles) < 4096:
            return np.searchsorted(self.composite, needles, side="left")
        order = np.argsort(needles, kind="stable")  # sorted needles let the search reuse its last bound
        out = np.empty(len(needles), np.int64)
        out[order] = np.searchsorted(self.composite, needles[order], side="left")
        return out

    def count_before(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Events of each code strictly before t (codes < 0: unknown key -> 0)."""
        hi = self._position(codes, t)
        return np.where(codes >= 0, hi - self.starts[np.maximum(codes, 0)], 0)

    def last_before(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The latest event time strictly before t for each code, or NEVER."""
        idx = self._position(codes, t) - 1
        ok = (codes >= 0) & (idx >= self.starts[np.maximum(codes, 0)])
        if not len(self.composite):
            return np.full(len(idx), NEVER)
        rank = self.composite[np.maximum(idx, 0)] % self.width
        return np.where(ok, self.times[np.minimum(rank, len(self.times) - 1)], NEVER)


def _events(codes: np.ndarray, times: np.ndarray, keys: KeyCodes) -> _Events:
    """``codes``: each event's key code (-1: no key); ``times``: microseconds (NEVER: no event)."""
    ok = (codes >= 0) & (times != NEVER)
    distinct = np.unique(times[ok])
    rank = np.searchsorted(distinct, times[ok])
    return _Events(keys, distinct, np.sort(codes[ok].astype(np.int64) * (len(distinct) + 1) + rank))


def _encode(column: pa.ChunkedArray) -> tuple[np.ndarray, KeyCodes]:
    """Codes of a string column's values (nulls -1) and the distinct values, by Arrow's dictionary encoding."""
    encoded = pa.compute.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64), KeyCodes(encoded.dictionary)


class OnlineFeatures:
    """A snapshot ready for lookups; ``build`` turns canonical lead rows into the model's feature columns.
    Batch scoring and the real-time API both score through it."""

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
        self._mapped: tuple = (None, {})  # (config, {feature: export column})
        self.meta = meta
        self.as_of_us = int(_us(pa.array([pd.Timestamp(self.meta["as_of"])]))[0])
        self.horizon_us = int(self.meta["horizon_days"]) * DAY_US
        created = _us(leads_table["created_us"])
        mature_us = np.where(created != NEVER, created + self.horizon_us, NEVER)
        won_us = _us(leads_table["won_us"])
        wih = leads_table["won_in_horizon"].to_numpy(zero_copy_only=False)
        one, everything = np.zeros(len(created), np.int64), KeyCodes(pa.array(["all"]))
        self.all_mature = _events(one, mature_us, everything)
        self.all_mature_wins = _events(one, np.where(wih, mature_us, NEVER), everything)
        self.history = {}
        for role in ROLES:
            codes, keys = _encode(leads_table[role])
            self.history[role] = {
                "leads": _events(codes, created, keys),
                "wins": _events(codes, won_us, keys),
                "mature": _events(codes, mature_us, keys),
                "mature_wins": _events(codes, np.where(wih, mature_us, NEVER), keys),
            }
        self.windows = [int(w) for w in self.meta["windows_days"]]
        self.types = self.meta["activity_types"]
        self.activities = None
        if activities is not None:
            self.lead_index = KeyCodes(leads_table["lead_id"].combine_chunks())
            ids = self.lead_index.codes(activities["lead_id"])
            at = _us(activities["occurred_us"])
            self.activities = {"any": _events(ids, at, self.lead_index)}
            for type_name, key in self.types.items():
                mine = pa.compute.equal(activities["type"], type_name).fill_null(False).to_numpy(zero_copy_only=False)
                self.activities[key] = _events(ids[mine], at[mine], self.lead_index)

    def build(self, leads, cfg: Config, feature_names: list[str]) -> dict[str, np.ndarray]:
        """``leads``: canonical columns (lead_id, created_at, campaign, source, account and the mapped columns as
        ``export:<name>``), as a frame or a dict of arrays (``created_at`` may be int64 microseconds).
        Returns columns as arrays: lead_id plus every feature in ``feature_names``."""
        lc = cfg.data.leads
        col = lambda name: np.asarray(leads[name], dtype=object)  # noqa: E731
        out = {"lead_id": col("lead_id").astype(str)}
        for role in ("campaign", "source"):
            if getattr(lc, role):
                out[f"{role}_name"] = col(role)
        if self._mapped[0] is not cfg:  # the config object is kept, so identity is a safe key
            self._mapped = (cfg, attribute_features(lc))
        for f, label in self._mapped[1].items():
            # Numbers as float64 (the ingest made them doubles; the API parsed them), text as objects.
            name = export_column(label)
            out[f] = np.asarray(leads[name], dtype=np.float64) if label in lc.numeric else col(name)
        if cfg.snapshot:  # a snapshot export has no creation times: no calendar, engagement or history features
            return self._finish(out, feature_names)
        t = _us(leads["created_at"])
        t_known = np.minimum(t, self.as_of_us + 1)  # outcomes are known up to as_of only
        local = t
        if self.meta["timezone"] != "UTC":  # wall-clock time in the configured zone (daylight saving included)
            zoned = pa.array(t, pa.int64()).cast(pa.timestamp("us", self.meta["timezone"]))
            local = pa.compute.local_timestamp(zoned).cast(pa.int64()).to_numpy(zero_copy_only=False)
        days = local // DAY_US
        out["created_weekday"] = ((days + 3) % 7 + 1).astype(np.float64)  # 1970-01-01 was a Thursday (4)
        out["created_hour"] = ((local // 3_600_000_000) % 24).astype(np.float64)
        out["created_month"] = (local.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(np.float64)
        if self.activities is not None:
            codes = self.lead_index.codes(out["lead_id"])
            for key, ev in self.activities.items():
                total = ev.count_before(codes, t)
                for w in self.windows:
                    out[f"act_{key}_{w}d"] = (total - ev.count_before(codes, t - w * DAY_US)).astype(np.float64)
            last = self.activities["any"].last_before(codes, t)
            # DATE_DIFF('second', ...) in the batch: whole seconds
            out["days_since_last_activity"] = np.where(last == NEVER, np.nan,
                                                       (t // 1_000_000 - last // 1_000_000) / 86400.0)
        zero = np.zeros(len(t), np.int64)
        den = self.all_mature.count_before(zero, t_known)
        num = self.all_mature_wins.count_before(zero, t_known)
        prior = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        m = float(self.meta["prior_strength"])
        for role in ROLES:
            if not getattr(lc, role):
                continue
            keys = col(role)
            h = self.history[role]
            missing = pd.isna(keys)
            codes = h["leads"].keys.codes(np.where(missing, None, keys))
            n_leads = h["leads"].count_before(codes, t).astype(np.float64)
            n_wins = h["wins"].count_before(codes, t).astype(np.float64)
            n_mat = h["mature"].count_before(codes, t_known)
            n_mwin = h["mature_wins"].count_before(codes, t_known)
            rate = (n_mwin + m * prior) / (n_mat + m)
            out[f"{role}_prior_leads"] = np.where(missing, np.nan, n_leads)
            out[f"{role}_prior_wins"] = np.where(missing, np.nan, n_wins)
            out[f"{role}_win_rate"] = np.where(missing, np.nan, rate)
        return self._finish(out, feature_names)

    @staticmethod
    def _finish(out: dict, feature_names: list[str]) -> dict[str, np.ndarray]:
        absent = [f for f in feature_names if f not in out]
        if absent:
            raise KeyError(f"the snapshot cannot build features {absent[:5]}")
        return out
