"""What was known at time t: the one point-in-time module every history feature goes through.

The rule: an event is known at ``t`` if it happened strictly before ``t``. An event at exactly the same
instant as a lead is *not* before it (a web visit logged in the same second as the sign-up, or another lead
arriving in the same second, is not history for that lead). A trailing window of ``w`` days holds the known
events with ``t - w days <= occurred_at``.

Three plans apply the rule, and tests hold each to a plain loop, ties included: two in SQL for the batch
(:func:`known_at`) and one over sorted arrays for scoring and the API (:class:`EventIndex`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.duck import days

NEVER = np.iinfo(np.int64).min  # "no time": a missing timestamp, or no event

_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}_{next(_names)}"


def known_at(
    con: duckdb.DuckDBPyConnection,
    queries: str,
    events: str,
    keys: list[str],
    windows_days: tuple[int, ...] = (),
    last: bool = False,
    few_per_key: bool = False,
    by: str | None = None,
    levels: list[str] = (),
    cumulative: str | None = None,
) -> str:
    """Count the events known at each query's instant, per key, over all time and in trailing windows.

    ``queries``: a table or view with ``qid``, the ``keys`` and ``at`` (TIMESTAMPTZ).
    ``events``: a table or view with the ``keys`` and ``occurred_at``; or, with ``cumulative``, one row per key
    and instant whose column of that name holds the running count of the key's events up to that instant (made
    once over every partition of a sharded build).
    Returns the name of a temp table with ``qid``, ``n_all``, ``n_<w>d`` for each window and, if ``last``,
    ``last_at`` (the latest known event; per level too, as ``last_at_<i>``, with ``by``). Counts are NULL where a key is NULL: "no campaign" is unknown,
    not zero.

    Two plans give the same answer (the tests check both against a plain loop):
    - by default, events are collapsed to one row per (key, instant) with a running count and an ASOF join
      finds, for each query, the latest instant strictly before ``at`` (or ``at - w``): its running count
      is the number of known events. Cost grows like sorting, never like pairs of (query, event), so it
      suits keys shared by many leads (campaign, account);
    - ``few_per_key=True`` joins each query to the events of its key and counts with filters: one pass,
      cheaper when a key has few queries (a lead's own activities). With ``by`` and ``levels`` it also
      counts per level of the events' column ``by``, as ``n_all_<i>`` and ``n_<w>d_<i>`` for ``levels[i]``.
    """
    if few_per_key:
        if cumulative is not None:
            raise ValueError("running counts need the ASOF plan (few_per_key=False)")
        return _by_join(con, queries, events, keys, windows_days, last, by, list(levels))
    if by is not None:
        raise ValueError("counting per level (by=...) needs few_per_key=True")
    return _by_asof(con, queries, events, keys, windows_days, last, cumulative)


def _by_join(con, queries: str, events: str, keys: list[str], windows: tuple[int, ...], last: bool,
             by: str | None, levels: list[str]) -> str:
    on = " AND ".join(f'q."{c}" = e."{c}"' for c in keys)
    not_null = " AND ".join(f'q."{c}" IS NOT NULL' for c in keys)
    cols = []
    subsets = [("", "TRUE")] + [(f"_{i}", f"e.\"{by}\" = '{v.replace(chr(39), chr(39) * 2)}'") for i, v in enumerate(levels)]
    for suffix, cond in subsets:
        cols.append(f"CASE WHEN {not_null} THEN COUNT(e.occurred_at) FILTER (WHERE {cond}) END AS n_all{suffix}")
        for w in windows:
            cols.append(f"CASE WHEN {not_null} THEN COUNT(e.occurred_at) FILTER "
                        f"(WHERE {cond} AND e.occurred_at >= q.at - {days(w)}) END AS n_{w}d{suffix}")
        if last:
            cols.append(f"MAX(e.occurred_at) FILTER (WHERE {cond}) AS last_at{suffix}")
    out = _name("pit_out")
    key_cols = ", ".join(f'q."{c}"' for c in keys)
    con.execute(
        f"""CREATE TEMP TABLE {out} AS
        SELECT q.qid, {', '.join(cols)}
        FROM {queries} q LEFT JOIN {events} e ON {on} AND e.occurred_at < q.at
        GROUP BY q.qid, q.at, {key_cols}"""
    )
    return out


def _by_asof(con, queries: str, events: str, keys: list[str], windows: tuple[int, ...], last: bool,
             cumulative: str | None = None) -> str:
    k = ", ".join(f'"{c}"' for c in keys)
    on = " AND ".join(f'q."{c}" = e."{c}"' for c in keys)
    not_null = " AND ".join(f'q."{c}" IS NOT NULL' for c in keys)
    cum = _name("pit_cum")
    if cumulative:
        con.execute(f'CREATE TEMP VIEW {cum} AS SELECT {k}, occurred_at AS t, "{cumulative}" AS cum FROM {events}')
    else:
        con.execute(
            f"""CREATE TEMP TABLE {cum} AS
            SELECT {k}, occurred_at AS t,
                   CAST(SUM(COUNT(*)) OVER (PARTITION BY {k} ORDER BY occurred_at ROWS UNBOUNDED PRECEDING) AS BIGINT) AS cum
            FROM {events} WHERE occurred_at IS NOT NULL GROUP BY {k}, occurred_at"""
        )
    parts = []
    for offset in (0, *windows):
        part = _name("pit_part")
        shift = f" - {days(offset)}" if offset else ""
        con.execute(
            f"""CREATE TEMP TABLE {part} AS
            SELECT q.qid,
                   CASE WHEN {not_null} THEN COALESCE(e.cum, 0) END AS cum,
                   e.t AS t
            FROM {queries} q ASOF LEFT JOIN {cum} e ON {on} AND q.at{shift} > e.t"""
        )
        parts.append((offset, part))
    base = parts[0][1]
    cols = [f"{base}.cum AS n_all"]
    joins = []
    for offset, part in parts[1:]:
        cols.append(f"{base}.cum - {part}.cum AS n_{offset}d")
        joins.append(f"JOIN {part} USING (qid)")
    if last:
        cols.append(f"{base}.t AS last_at")
    out = _name("pit_out")
    con.execute(f"CREATE TEMP TABLE {out} AS SELECT qid, {', '.join(cols)} FROM {base} {' '.join(joins)}")
    for _, part in parts:
        con.execute(f"DROP TABLE {part}")
    con.execute(f"DROP {'VIEW' if cumulative else 'TABLE'} {cum}")
    return out


# --- the array plan ------------------------------------------------------------------------------------

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
            found = pc.index_in(values, value_set=self.arrow)
            return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        values = np.asarray(values, dtype=object)
        if len(values) <= 64:
            get = self.lookup.get
            return np.fromiter((get(v, -1) if isinstance(v, str) else -1 for v in values), np.int64, len(values))
        return self.codes(pa.array(values, pa.string(), from_pandas=True))


class Timeline:
    """The event times of one stream, sorted (microseconds): every index of the stream (per key, per activity
    type) ranks its events and its queries against the same times, sorted once. An event's rank is how many
    events came strictly before it (ties share one), so an event is before ``t`` exactly when its rank is below
    ``t``'s."""

    def __init__(self, times: np.ndarray):
        self.times = np.sort(times[times != NEVER])

    def rank(self, t: np.ndarray) -> np.ndarray:
        """How many events lie strictly before each t."""
        return np.searchsorted(self.times, t, side="left")


@dataclass
class EventIndex:
    """One event stream, for counting by binary search: events sorted by (key code, time), each as one int64,
    ``code * width + rank of its time on the stream's time line``. Ranks, not times, so that no time range can
    overflow the key (``width`` is the number of times on the line plus one)."""

    keys: KeyCodes
    timeline: Timeline
    composite: np.ndarray

    def __post_init__(self):
        self.width = len(self.timeline.times) + 1
        if (len(self.keys) + 1) * self.width >= 1 << 62:
            raise OverflowError("too many keys and distinct times for one event stream")
        # Where each key's events start: one lookup instead of a second binary search per query.
        self.starts = np.searchsorted(self.composite, np.arange(len(self.keys) + 1, dtype=np.int64) * self.width)

    def _position(self, codes: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """Index of the first event of each code at or after the time of the given rank."""
        needles = np.maximum(codes, 0).astype(np.int64) * self.width + rank
        if len(needles) < 4096:
            return np.searchsorted(self.composite, needles, side="left")
        order = np.argsort(needles, kind="stable")  # sorted needles let the search reuse its last bound
        out = np.empty(len(needles), np.int64)
        out[order] = np.searchsorted(self.composite, needles[order], side="left")
        return out

    def count_before(self, codes: np.ndarray, t: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
        """Events of each code strictly before t (codes < 0: unknown key -> 0). ``rank``: t's rank on the time
        line, if the caller has it already (several indexes of one stream share it)."""
        hi = self._position(codes, self.timeline.rank(t) if rank is None else rank)
        return np.where(codes >= 0, hi - self.starts[np.maximum(codes, 0)], 0)

    def last_before(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The latest event time strictly before t for each code, or NEVER."""
        idx = self._position(codes, self.timeline.rank(t)) - 1
        ok = (codes >= 0) & (idx >= self.starts[np.maximum(codes, 0)])
        if not len(self.composite):
            return np.full(len(idx), NEVER)
        rank = self.composite[np.maximum(idx, 0)] % self.width
        times = self.timeline.times
        return np.where(ok, times[np.minimum(rank, len(times) - 1)], NEVER)


def event_index(codes: np.ndarray, times: np.ndarray, keys: KeyCodes, timeline: Timeline | None = None,
                ranks: np.ndarray | None = None) -> EventIndex:
    """``codes``: each event's key code (-1: no key); ``times``: microseconds (NEVER: no event). ``timeline``
    and ``ranks`` (each event's rank on it), when several indexes share a stream's time line."""
    timeline = timeline or Timeline(times)
    ok = (codes >= 0) & (times != NEVER)
    rank = (ranks if ranks is not None else timeline.rank(times))[ok]
    return EventIndex(keys, timeline, np.sort(codes[ok].astype(np.int64) * (len(timeline.times) + 1) + rank))
