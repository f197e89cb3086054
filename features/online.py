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

Times are held as integer milliseconds. ``tests/test_api.py`` checks that these features and the scores
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

DAY_MS = 86_400_000
SHIFT = 39  # key code in the high bits, milliseconds since the snapshot's base time in the low 39 (17 years)
ROLES = ("campaign", "source", "account")


def _ms(values) -> np.ndarray:
    """Timestamps (tz-aware) to int64 milliseconds since the epoch; missing -> int64 min."""
    s = pd.to_datetime(pd.Series(values), utc=True)
    out = np.full(len(s), np.iinfo(np.int64).min, np.int64)
    ok = s.notna().to_numpy()
    out[ok] = s[ok].dt.as_unit("ms").astype("int64").to_numpy()
    return out


def snapshot_tables(frame: pd.DataFrame, activities: pa.Table | None, cfg: Config, as_of: datetime,
                    labels: dict[str, str]) -> tuple[dict, pa.Table, pa.Table | None]:
    """What the online features need, from the feature frame (one row per lead known at ``as_of``) and the
    canonical activities: (manifest, leads, activities)."""
    leads = pa.table({
        "lead_id": pa.array(frame["lead_id"].astype(str).to_numpy(), pa.string()),
        "created_ms": _ms(frame["created_at"]),
        **{role: pa.Array.from_pandas(frame[role].astype("string")).cast(pa.string()) for role in ROLES},
        "won_ms": _ms(frame["won_at"]),
        "won_in_horizon": pa.array(frame["label"].fillna(0).to_numpy() == 1),
    })
    acts = None
    if activities is not None and activities.num_rows:
        import pyarrow.compute as pc

        known = pa.array(frame["lead_id"].astype(str).to_numpy(), pa.string())
        acts = activities.select(["lead_id", "type", "occurred_at"])
        acts = acts.filter(pc.and_(pc.is_in(acts["lead_id"], value_set=known),
                                   pc.less_equal(acts["occurred_at"], pa.scalar(pd.Timestamp(as_of), acts["occurred_at"].type))))
        acts = pa.table({"lead_id": acts["lead_id"], "type": acts["type"],
                         "occurred_ms": _ms(acts["occurred_at"].to_pandas())})
    types = {}  # activity type -> feature key, as build_features named them
    for f, text in labels.items():
        m = re.fullmatch(r"act_(.+)_(\d+)d", f)
        if m and m.group(1) != "any":
            types[text.rsplit(" in the ", 1)[0]] = m.group(1)
    manifest = {"as_of": pd.Timestamp(as_of).isoformat(), "horizon_days": cfg.label.horizon_days,
                "prior_strength": cfg.features.prior_strength, "windows_days": sorted(set(cfg.features.windows_days)),
                "timezone": cfg.data.timezone, "activity_types": types, "config_hash": cfg.digest(),
                "has_activities": acts is not None}
    return manifest, leads, acts


def save_snapshot(folder: Path, manifest: dict, leads: pa.Table, activities: pa.Table | None) -> Path:
    """Files are replaced atomically, the manifest (which readers check first) last."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(leads, folder / "leads.parquet")
    if activities is not None:
        _write(activities, folder / "activities.parquet")
    tmp = folder / ".snapshot.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    tmp.replace(folder / "snapshot.json")
    return folder


def _write(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


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
    """Sorted composite keys (key code << SHIFT | ms - base) of one event stream, for counting by binary search."""

    keys: KeyCodes
    composite: np.ndarray

    def __post_init__(self):
        # Where each key's events start: one lookup instead of a second binary search per query.
        self.starts = np.searchsorted(self.composite, np.arange(len(self.keys) + 1, dtype=np.int64) << SHIFT)

    def _position(self, codes: np.ndarray, t: np.ndarray, base: int) -> np.ndarray:
        """Index of the first event of each code at or after t."""
        needles = (np.maximum(codes, 0).astype(np.int64) << SHIFT) | np.minimum(np.maximum(t - base, 0), (1 << SHIFT) - 1)
        if len(needles) < 4096:
            return np.searchsorted(self.composite, needles, side="left")
        order = np.argsort(needles, kind="stable")  # sorted needles let the search reuse its last bound
        out = np.empty(len(needles), np.int64)
        out[order] = np.searchsorted(self.composite, needles[order], side="left")
        return out

    def count_before(self, codes: np.ndarray, t: np.ndarray, base: int) -> np.ndarray:
        """Events of each code strictly before t (codes < 0: unknown key -> 0)."""
        hi = self._position(codes, t, base)
        return np.where(codes >= 0, hi - self.starts[np.maximum(codes, 0)], 0)

    def last_before(self, codes: np.ndarray, t: np.ndarray, base: int) -> np.ndarray:
        """The latest event time (ms) strictly before t for each code, or int64 min."""
        idx = self._position(codes, t, base) - 1
        ok = (codes >= 0) & (idx >= self.starts[np.maximum(codes, 0)])
        found = self.composite[np.maximum(idx, 0)]
        return np.where(ok, (found & ((1 << SHIFT) - 1)) + base, np.iinfo(np.int64).min)


def _events(codes: np.ndarray, times: np.ndarray, base: int, keys: KeyCodes) -> _Events:
    """``codes``: each event's key code (-1: no key); ``times``: ms (int64 min: no event)."""
    ok = (codes >= 0) & (times != np.iinfo(np.int64).min)
    return _Events(keys, np.sort((codes[ok].astype(np.int64) << SHIFT) | (times[ok] - base)))


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
        acts = folder / "activities.parquet"
        activities = pq.read_table(acts) if meta.get("has_activities") and acts.is_file() else None
        return cls(meta, pq.read_table(folder / "leads.parquet"), activities)

    def __init__(self, meta: dict, leads_table: pa.Table, activities: pa.Table | None):
        self._mapped: tuple = (None, {})  # (config, {feature: export column})
        self.meta = meta
        self.as_of_ms = int(_ms([self.meta["as_of"]])[0])
        self.horizon_ms = int(self.meta["horizon_days"]) * DAY_MS
        never = np.iinfo(np.int64).min
        created = leads_table["created_ms"].to_numpy()
        known = created[created != never]
        self.base = int(known.min()) - 400 * DAY_MS if len(known) else 0
        mature_ms = np.where(created != never, created + self.horizon_ms, never)
        won_ms = leads_table["won_ms"].to_numpy()
        wih = leads_table["won_in_horizon"].to_numpy(zero_copy_only=False)
        one, everything = np.zeros(len(created), np.int64), KeyCodes(pa.array(["all"]))
        self.all_mature = _events(one, mature_ms, self.base, everything)
        self.all_mature_wins = _events(one, np.where(wih, mature_ms, never), self.base, everything)
        self.history = {}
        for role in ROLES:
            codes, keys = _encode(leads_table[role])
            self.history[role] = {
                "leads": _events(codes, created, self.base, keys),
                "wins": _events(codes, won_ms, self.base, keys),
                "mature": _events(codes, mature_ms, self.base, keys),
                "mature_wins": _events(codes, np.where(wih, mature_ms, never), self.base, keys),
            }
        self.windows = [int(w) for w in self.meta["windows_days"]]
        self.types = self.meta["activity_types"]
        self.activities = None
        if activities is not None:
            self.lead_index = KeyCodes(leads_table["lead_id"].combine_chunks())
            ids = self.lead_index.codes(activities["lead_id"])
            at = activities["occurred_ms"].to_numpy()
            self.activities = {"any": _events(ids, at, self.base, self.lead_index)}
            for type_name, key in self.types.items():
                mine = pa.compute.equal(activities["type"], type_name).fill_null(False).to_numpy(zero_copy_only=False)
                self.activities[key] = _events(ids[mine], at[mine], self.base, self.lead_index)

    def build(self, leads, cfg: Config, feature_names: list[str]) -> dict[str, np.ndarray]:
        """``leads``: canonical columns (lead_id, created_at, campaign, source, account and the mapped columns
        under their export names), as a frame or a dict of arrays (``created_at`` may be int64 milliseconds).
        Returns columns as arrays: lead_id plus every feature in ``feature_names``."""
        lc = cfg.data.leads
        if not cfg.snapshot:
            created_at = leads["created_at"]
            t = np.asarray(created_at) if np.asarray(created_at).dtype == np.int64 else _ms(created_at)  # API: ms
        col = lambda name: np.asarray(leads[name], dtype=object)  # noqa: E731
        out = {"lead_id": col("lead_id").astype(str)}
        for role in ("campaign", "source"):
            if getattr(lc, role):
                out[f"{role}_name"] = col(role)
        if self._mapped[0] is not cfg:  # the config object is kept, so identity is a safe key
            self._mapped = (cfg, attribute_features(lc))
        for f, label in self._mapped[1].items():
            # Numbers as float64 (the ingest made them doubles; the API parsed them), text as objects.
            out[f] = np.asarray(leads[label], dtype=np.float64) if label in lc.numeric else col(label)
        if cfg.snapshot:  # a snapshot export has no creation times: no calendar, engagement or history features
            return self._finish(out, feature_names)
        t_known = np.minimum(t, self.as_of_ms + 1)  # outcomes are known up to as_of only
        if self.meta["timezone"] == "UTC":  # plain arithmetic; other zones have daylight saving
            local = t
        else:
            zoned = pd.to_datetime(t, unit="ms", utc=True).tz_convert(self.meta["timezone"])
            local = zoned.tz_localize(None).as_unit("ms").asi8
        days = local // DAY_MS
        out["created_weekday"] = ((days + 3) % 7 + 1).astype(np.float64)  # 1970-01-01 was a Thursday (4)
        out["created_hour"] = ((local // 3_600_000) % 24).astype(np.float64)
        out["created_month"] = (local.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(np.float64)
        if self.activities is not None:
            codes = self.lead_index.codes(out["lead_id"])
            for key, ev in self.activities.items():
                total = ev.count_before(codes, t, self.base)
                for w in self.windows:
                    out[f"act_{key}_{w}d"] = (total - ev.count_before(codes, t - w * DAY_MS, self.base)).astype(np.float64)
            last = self.activities["any"].last_before(codes, t, self.base)
            # DATE_DIFF('second', ...) in the batch: whole seconds
            out["days_since_last_activity"] = np.where(last == np.iinfo(np.int64).min, np.nan,
                                                       (t // 1000 - last // 1000) / 86400.0)
        zero = np.zeros(len(t), np.int64)
        den = self.all_mature.count_before(zero, t_known, self.base)
        num = self.all_mature_wins.count_before(zero, t_known, self.base)
        prior = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        m = float(self.meta["prior_strength"])
        for role in ROLES:
            if not getattr(lc, role):
                continue
            keys = col(role)
            h = self.history[role]
            missing = pd.isna(keys)
            codes = h["leads"].keys.codes(np.where(missing, None, keys))
            n_leads = h["leads"].count_before(codes, t, self.base).astype(np.float64)
            n_wins = h["wins"].count_before(codes, t, self.base).astype(np.float64)
            n_mat = h["mature"].count_before(codes, t_known, self.base)
            n_mwin = h["mature_wins"].count_before(codes, t_known, self.base)
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
