"""What was known at time t: the one point-in-time function every history feature goes through.

The rule: an event is known at ``t`` if it happened strictly before ``t``. An event at exactly the same
instant as a lead is *not* before it (a web visit logged in the same second as the sign-up, or another lead
arriving in the same second, is not history for that lead).
"""

from __future__ import annotations

import duckdb

_counter = [0]


def _name(prefix: str) -> str:
    _counter[0] += 1
    return f"{prefix}_{_counter[0]}"


def known_at(
    con: duckdb.DuckDBPyConnection,
    queries: str,
    events: str,
    keys: list[str],
    windows_days: tuple[int, ...] = (),
    last: bool = False,
) -> str:
    """Count the events known at each query's instant, per key, over all time and in trailing windows.

    ``queries``: a table or view with ``qid``, the ``keys`` and ``at`` (TIMESTAMPTZ).
    ``events``: a table or view with the ``keys`` and ``occurred_at``.
    Returns the name of a temp table with ``qid``, ``n_all``, ``n_<w>d`` for each window
    (events with ``at - w days <= occurred_at < at``) and, if ``last``, ``last_at`` (latest event before
    ``at``). Counts are NULL where a key is NULL: "no campaign" is unknown, not zero.

    How: collapse events to one row per (key, instant) with a running count, then an ASOF join finds, for
    each query, the latest instant strictly before ``at`` (or ``at - w``); its running count is the number
    of events before it. Cost grows like sorting, never like pairs of (query, event).
    """
    k = ", ".join(f'"{c}"' for c in keys)
    on = " AND ".join(f'q."{c}" = e."{c}"' for c in keys)
    not_null = " AND ".join(f'q."{c}" IS NOT NULL' for c in keys)
    cum = _name("pit_cum")
    con.execute(
        f"""CREATE TEMP TABLE {cum} AS
        SELECT {k}, occurred_at AS t,
               CAST(SUM(COUNT(*)) OVER (PARTITION BY {k} ORDER BY occurred_at ROWS UNBOUNDED PRECEDING) AS BIGINT) AS cum
        FROM {events} WHERE occurred_at IS NOT NULL GROUP BY {k}, occurred_at"""
    )
    parts = []
    for offset in (0, *windows_days):
        part = _name("pit_part")
        shift = f" - INTERVAL {int(offset)} DAY" if offset else ""
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
    con.execute(f"DROP TABLE {cum}")
    return out
