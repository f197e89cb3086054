"""Capacity-aware routing: queues from the config, filled highest probability first.

Capacities are per day. A lead routed to a queue earlier today keeps that queue (a rep may already be on
it) and counts against the queue's capacity; the capacity left is filled with the best unrouted leads,
queue by queue in the configured order, and what no queue takes goes to the fallback (``nurture``).
Work is per queue, never per lead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.config import RoutingConfig


def route_leads(scores: pd.DataFrame, columns: pd.DataFrame, routing: RoutingConfig,
                routed_today: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Assign a queue to each scored lead.

    ``scores``: lead_id, probability, tier (any order). ``columns``: the export columns the queues filter
    on, row-aligned with ``scores``. ``routed_today``: lead_id and route of leads routed by earlier runs
    today (from the ledger). Returns the route per row and a per-queue summary.
    """
    n = len(scores)
    route = np.full(n, routing.fallback, dtype=object)
    probability = scores["probability"].to_numpy()
    # Best first; ties broken by lead_id so that a re-run routes identically.
    order = np.lexsort((scores["lead_id"].to_numpy().astype(str), -probability))
    taken = np.zeros(n, bool)
    rows = []
    today = routed_today if routed_today is not None else pd.DataFrame({"lead_id": [], "route": []})
    for queue in routing.queues:
        match = np.ones(n, bool)
        if queue.tiers:
            match &= scores["tier"].isin(queue.tiers).to_numpy()
        for col, allowed in queue.where.items():
            match &= columns[col].astype("string").isin(allowed).fillna(False).to_numpy(dtype=bool)
        earlier = set(today.loc[today["route"] == queue.name, "lead_id"])
        sticky = ~taken & scores["lead_id"].isin(earlier).to_numpy()
        route[sticky], taken[sticky] = queue.name, True
        room = max(queue.capacity - len(earlier), 0)
        candidates = order[(match & ~taken)[order]][:room]
        route[candidates], taken[candidates] = queue.name, True
        rows.append({"queue": queue.name, "capacity": queue.capacity, "routed_earlier_today": len(earlier),
                     "assigned_now": len(candidates)})
    summary = pd.DataFrame(rows, columns=["queue", "capacity", "routed_earlier_today", "assigned_now"])
    summary = pd.concat([summary, pd.DataFrame([{"queue": routing.fallback, "capacity": None,
                                                 "routed_earlier_today": None, "assigned_now": None}])],
                        ignore_index=True)
    per = pd.DataFrame({"queue": route, "p": probability, "tier": scores["tier"].to_numpy()})
    stats = per.groupby("queue").agg(leads=("p", "size"), expected_closes=("p", "sum"))
    tiers = per.pivot_table(index="queue", columns="tier", values="p", aggfunc="size", fill_value=0)
    tiers = tiers.reindex(columns=["A", "B", "C", "D"], fill_value=0).add_prefix("tier_")
    summary = summary.join(stats, on="queue").join(tiers, on="queue")
    summary[["leads", *tiers.columns]] = summary[["leads", *tiers.columns]].fillna(0).astype(int)
    summary["expected_closes"] = summary["expected_closes"].fillna(0.0).round(2)
    return route, summary


def first_matching_queue(tier: np.ndarray, columns, routing: RoutingConfig) -> np.ndarray:
    """The first queue whose filters each lead matches, capacity aside (the real-time API is stateless; daily
    capacity is enforced by the batch runs). ``columns``: export column -> array of values."""
    n = len(tier)
    route = np.full(n, routing.fallback, dtype=object)
    free = np.ones(n, bool)
    for queue in routing.queues:
        match = free.copy()
        if queue.tiers:
            match &= np.isin(tier, queue.tiers)
        for col, allowed in queue.where.items():
            match &= np.isin(np.asarray(columns[col], dtype=object), list(allowed))
        route[match], free[match] = queue.name, False
    return route


def routing_columns(routing: RoutingConfig, lc, raw: pd.DataFrame, lead_ids) -> pd.DataFrame:
    """The export columns the queues filter on, under their export names, in the order of ``lead_ids``
    (``raw``: canonical lead rows; ``lc``: the config's data.leads)."""
    rows = raw.set_index("lead_id").loc[lead_ids]
    names = sorted({c for q in routing.queues for c in q.where})
    return pd.DataFrame({n: rows[lc.internal_column(n)].to_numpy() for n in names})
