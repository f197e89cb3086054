"""A scoring run's work between reading its inputs and publishing: open leads -> features -> scores, routes and
the manifest that accounts for every lead of the export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from leadscore.config import Config
from leadscore.contract import export_column, export_name
from serving.ledger import changed_since
from serving.routing import route_leads, routing_columns


@dataclass
class ScoredLeads:
    scores: pd.DataFrame  # the published layout (export names), plus input_hash
    queues: pd.DataFrame  # per-queue summary
    considered: int  # open leads looked at
    unchanged: int  # of those, not rescored (--since-last)


def score_open_leads(scorer, online, open_leads: pd.DataFrame, cfg: Config, scored_at: datetime,
                     seen: pd.DataFrame | None = None, routed_today: pd.DataFrame | None = None) -> ScoredLeads:
    """Score the open leads (canonical rows) with ``scorer`` on features from ``online`` (the snapshot this run
    saves, so batch and real-time scores cannot differ). With ``seen`` (the ledger's last inputs per lead), only
    leads whose inputs or model changed are scored. Routing respects today's earlier routes."""
    features = pd.DataFrame(online.build(open_leads, cfg, scorer.model.features))
    # A passthrough named "campaign" or "source" is that role's own column (the config allows no other), which is
    # published anyway.
    passthrough = [export_column(c) for c in cfg.data.leads.passthrough if c not in ("campaign", "source")]
    extra = [c for c in ("campaign", "source", *passthrough) if c in open_leads.columns]
    features[extra] = open_leads[extra].to_numpy()
    features["input_hash"] = scorer.input_hash(features)  # for --since-last and the ledger, computed once
    todo = changed_since(seen, features, scorer.model_version) if seen is not None else features
    scores = scorer.score(todo, scored_at, cfg.scoring.reason_tiers, extra_columns=[*extra, "input_hash"])
    route, queues = route_leads(scores, routing_columns(cfg.routing, cfg.data.leads, open_leads, scores["lead_id"]),
                                cfg.routing, routed_today)
    scores.insert(scores.columns.get_loc("reasons") + 1, "route", route)
    return ScoredLeads(scores.rename(columns=export_name), queues, len(features), len(features) - len(todo))


def scores_manifest(run: ScoredLeads, scorer, cfg: Config, ingest: dict, feature_counts: dict, as_of: str,
                    scored_at: datetime, since_last: bool, drift: dict) -> dict:
    """What a published scores run says about itself, with the accounting of every lead of the export."""
    leads = ingest["counts"]["leads"]
    rows = {
        "leads_in": leads["rows_in"],
        "quarantined": leads["quarantined"],
        "created_after_as_of": feature_counts.get("leads_after_as_of", 0),
        "closed": int(feature_counts["leads"] - run.considered),
        "unchanged_since_last": int(run.unchanged),
        "scored": int(len(run.scores)),
    }
    return {
        "kind": "scores",
        "model_name": "lead-quality",
        "model_version": scorer.model_version,
        "model_sha256": scorer.model_sha256,
        "config_hash": cfg.digest(),
        "data_fingerprint": ingest["data_fingerprint"],
        "as_of": as_of,
        "scored_at": scored_at.isoformat(),
        "mode": "since-last" if since_last else "all open leads",
        "rows": rows,
        "tiers": run.scores["tier"].value_counts().reindex(list("ABCD"), fill_value=0).to_dict(),
        "queues": run.queues.to_dict("records"),
        "drift": {"max_feature_psi": drift["max_feature_psi"], "score_psi": drift["score_psi"],
                  "drifted": [f["feature"] for f in drift["features"] if f["drifted"]]} if drift["available"] else None,
        "input_rows": ingest["counts"],
        "quarantine_files": ingest["quarantine_files"],
    }
