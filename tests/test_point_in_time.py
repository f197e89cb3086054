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


def run_known_at(queries, events):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ts = pa.timestamp("us", "UTC")
    q = pa.table({"qid": pa.array(range(len(queries)), pa.int64()), "key": pa.array([k for k, _ in queries], pa.string()),
                  "at": pa.array([t for _, t in queries], ts)})
    e = pa.table({"key": pa.array([k for k, _ in events], pa.string()), "occurred_at": pa.array([t for _, t in events], ts)})
    con.register("q", q)
    con.register("e", e)
    out = known_at(con, "q", "e", ["key"], WINDOWS, last=True)
    cols = ", ".join(["qid", "n_all", *[f"n_{w}d" for w in WINDOWS], "last_at"])
    return con.execute(f"SELECT {cols} FROM {out} ORDER BY qid").fetchall()


@settings(max_examples=120, deadline=None)
@given(
    queries=st.lists(st.tuples(keys, instants), min_size=1, max_size=25),
    events=st.lists(st.tuples(keys, instants), min_size=0, max_size=40),
)
def test_known_at_equals_naive_loop(queries, events):
    got = run_known_at(queries, events)
    assert [tuple(r) for r in got] == naive(queries, events)


def test_event_at_the_same_instant_is_not_before():
    at = T0 + timedelta(days=1)
    events = [("a", at), ("a", at - timedelta(seconds=1)), ("a", at - timedelta(days=1)), ("a", at + timedelta(days=1))]
    (qid, n_all, n_1d, n_3d, last_at), = run_known_at([("a", at)], events)
    # The event exactly at `at` and the later one are not known; the one exactly 1 day before is inside the window.
    assert (n_all, n_1d, n_3d) == (2, 2, 2)
    assert last_at == at - timedelta(seconds=1)
