"""Routing within capacity, queue by queue (pure functions)."""

import numpy as np
import pandas as pd
import pytest

from leadscore.config import RoutingConfig
from serving.routing import route_leads


def _leads(n=500, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    tier = np.where(p > 0.9, "A", np.where(p > 0.7, "B", np.where(p > 0.4, "C", "D")))
    scores = pd.DataFrame({"lead_id": [f"L{i:04d}" for i in range(n)], "probability": p, "tier": tier})
    columns = pd.DataFrame({"Country": rng.choice(["Germany", "France", "India", "United States"], n)})
    return scores, columns


def _routing(queues):
    return RoutingConfig.model_validate({"fallback": "nurture", "queues": queues})


def test_routing_fills_queues_best_first_within_capacity():
    scores, columns = _leads()
    routing = _routing([{"name": "eu", "capacity": 20, "tiers": ["A", "B"], "where": {"Country": ["Germany", "France"]}},
                        {"name": "hot", "capacity": 30, "tiers": ["A"]}])
    route, summary = route_leads(scores, columns, routing)
    p, tier, eu_match = scores["probability"].to_numpy(), scores["tier"].to_numpy(), columns["Country"].isin(["Germany", "France"]).to_numpy()
    eu = route == "eu"
    assert eu.sum() == 20 and (eu_match[eu]).all() and np.isin(tier[eu], ["A", "B"]).all()
    # No better matching lead was left out of a full queue.
    assert p[eu].min() > p[eu_match & np.isin(tier, ["A", "B"]) & ~eu].max()
    hot = route == "hot"
    assert hot.sum() == 30 and (tier[hot] == "A").all()
    assert p[hot].min() > p[(tier == "A") & ~eu & ~hot].max()  # overflow from eu competes here too
    assert set(route) == {"eu", "hot", "nurture"}
    s = summary.set_index("queue")
    assert s.loc["eu", "leads"] == 20 and s.loc["nurture", "leads"] == len(scores) - 50
    assert s.loc["hot", "expected_closes"] == pytest.approx(p[hot].sum(), abs=0.01)
    assert s[["tier_A", "tier_B", "tier_C", "tier_D"]].to_numpy().sum() == len(scores)


def test_routing_capacity_is_per_day_and_routes_stick():
    scores, columns = _leads()
    routing = _routing([{"name": "hot", "capacity": 30, "tiers": ["A"]}])
    first, _ = route_leads(scores, columns, routing)
    earlier = pd.DataFrame({"lead_id": scores["lead_id"][first == "hot"].to_numpy()[:10], "route": "hot"})
    # Later the same day: 10 leads routed earlier keep their queue; 20 places are left for the rest.
    again, summary = route_leads(scores, columns, routing, earlier)
    assert (again == "hot").sum() == 30 and set(earlier["lead_id"]) <= set(scores["lead_id"][again == "hot"])
    assert summary.set_index("queue").loc["hot", "assigned_now"] == 20
    # Identical inputs route identically.
    assert (route_leads(scores, columns, routing)[0] == first).all()
