"""The one point-in-time function against the obvious slow version (hypothesis, ties included)."""

from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from features.pit import known_at

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
WINDOWS = (1, 3)

# Times on a coarse grid (hours over eight days) so that ties between events and queries are frequent.
instants = st.integers(min_value=0, max_value=24 * 8).map(lambda h: T0 + timedelta(hours=h))
keys = st.sampled_from(["a", "b", "c", None])


def naive(queries, events):
    """For each query: events of the same key strictly before it, in all and per trailing window."""
    rows = []
    for qid, (key, at) in enumerate(queries):
        if key is None:  # no key: unknown, not zero
            rows.append((qid, None, *[None] * len(WINDOWS), None))
            continue
        before = [t for k, t in events if k == key and t < at]
        windows = [sum(1 for t in before if t >= at - timedelta(days=w)) for w in WINDOWS]
        rows.append((qid, len(before), *windows, max(before) if before else None))
    return rows


def run_known_at(queries, events, few_per_key=False):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ts = pa.timestamp("us", "UTC")
    q = pa.table({"qid": pa.array(range(len(queries)), pa.int64()), "key": pa.array([k for k, _ in queries], pa.string()),
                  "at": pa.array([t for _, t in queries], ts)})
    e = pa.table({"key": pa.array([k for k, _ in events], pa.string()), "occurred_at": pa.array([t for _, t in events], ts)})
    con.register("q", q)
    con.register("e", e)
    out = known_at(con, "q", "e", ["key"], WINDOWS, last=True, few_per_key=few_per_key)
    cols = ", ".join(["qid", "n_all", *[f"n_{w}d" for w in WINDOWS], "last_at"])
    return con.execute(f"SELECT {cols} FROM {out} ORDER BY qid").fetchall()


@settings(max_examples=120, deadline=None)
@given(
    queries=st.lists(st.tuples(keys, instants), min_size=1, max_size=25),
    events=st.lists(st.tuples(keys, instants), min_size=0, max_size=40),
)
def test_known_at_equals_naive_loop(queries, events):
    want = naive(queries, events)
    for few_per_key in (False, True):  # both query plans
        got = run_known_at(queries, events, few_per_key)
        assert [tuple(r) for r in got] == want, few_per_key


def test_event_at_the_same_instant_is_not_before():
    at = T0 + timedelta(days=1)
    events = [("a", at), ("a", at - timedelta(seconds=1)), ("a", at - timedelta(days=1)), ("a", at + timedelta(days=1))]
    for few_per_key in (False, True):
        (qid, n_all, n_1d, n_3d, last_at), = run_known_at([("a", at)], events, few_per_key)
        # The event exactly at `at` and the later one are not known; the one exactly 1 day before is in the window.
        assert (n_all, n_1d, n_3d) == (2, 2, 2)
        assert last_at == at - timedelta(seconds=1)


LEVELS = ["x", "y"]


@settings(max_examples=60, deadline=None)
@given(
    queries=st.lists(st.tuples(keys, instants), min_size=1, max_size=15),
    events=st.lists(st.tuples(keys, instants, st.sampled_from(["x", "y", "z"])), min_size=0, max_size=30),
)
def test_counts_per_level_equal_naive_loop(queries, events):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ts = pa.timestamp("us", "UTC")
    con.register("q", pa.table({"qid": pa.array(range(len(queries)), pa.int64()),
                                "key": pa.array([k for k, _ in queries], pa.string()),
                                "at": pa.array([t for _, t in queries], ts)}))
    con.register("e", pa.table({"key": pa.array([k for k, _, _ in events], pa.string()),
                                "occurred_at": pa.array([t for _, t, _ in events], ts),
                                "kind": pa.array([v for _, _, v in events], pa.string())}))
    out = known_at(con, "q", "e", ["key"], WINDOWS, few_per_key=True, by="kind", levels=LEVELS)
    cols = [f"n_all_{i}" for i in range(len(LEVELS))] + [f"n_{w}d_{i}" for i in range(len(LEVELS)) for w in WINDOWS]
    got = con.execute(f"SELECT {', '.join(cols)} FROM {out} ORDER BY qid").fetchall()
    want = []
    for key, at in queries:
        per_level = {lv: naive([(key, at)], [(k, t) for k, t, v in events if v == lv])[0] for lv in LEVELS}
        row = [per_level[lv][1] for lv in LEVELS]
        row += [per_level[lv][2 + j] for lv in LEVELS for j in range(len(WINDOWS))]
        want.append(tuple(row))
    assert [tuple(r) for r in got] == want
