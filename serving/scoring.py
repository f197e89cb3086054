"""A scoring run's work between reading its inputs and publishing: open leads -> features -> scores, routes and
the manifest that accounts for every lead of the export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features.segments import segment_of
from leadscore.config import Config
from leadscore.contract import export_column, export_name
from serving.ledger import changed_since
from serving.routing import route_leads, routing_columns


# A lead's trend against its previous published probability: rising or falling once it moved by a quarter of
# itself and by at least half a percentage point (smaller moves of small probabilities are noise to a rep).
TREND_RATIO = 1.25
TREND_MIN_CHANGE = 0.005


@dataclass
class ScoredLeads:
    scores: pd.DataFrame  # the published layout (export names), plus input_hash
    queues: pd.DataFrame  # per-queue summary
    considered: int  # open leads looked at
    unchanged: int  # of those, not rescored (--since-last): their previous published row is carried
    rescored: np.ndarray  # per row of scores: scored by this run (the ledger records only these)


def trend(probability: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """rising / steady / falling against the previous probability (NaN: "new", first scored)."""
    p, q = np.asarray(probability, np.float64), np.asarray(previous, np.float64)
    out = np.full(len(p), "steady", dtype=object)
    out[(p >= q * TREND_RATIO) & (p - q >= TREND_MIN_CHANGE)] = "rising"
    out[(p * TREND_RATIO <= q) & (q - p >= TREND_MIN_CHANGE)] = "falling"
    out[np.isnan(q)] = "new"
    return out


def open_lead_features(scorer, online, open_leads: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Both models' features of the open leads from the snapshot: the fit features at each lead's arrival and
    the now-features at the snapshot's moment (just after as_of: every event up to as_of is known)."""
    features = pd.DataFrame(online.build(open_leads, cfg, scorer.fit_features))
    if scorer.now_model is not None:
        at = np.full(len(open_leads), online.as_of_us + 1, np.int64)
        extra = pd.DataFrame(online.build(open_leads, cfg, scorer.now_features, table="now", at=at))
        features = pd.concat([features, extra.drop(columns=[c for c in extra.columns if c in features.columns])],
                             axis=1)
    if cfg.segments:
        features["segment"] = segment_of(open_leads, cfg)
    return features


def score_open_leads(scorer, online, open_leads: pd.DataFrame, cfg: Config, scored_at: datetime,
                     seen: pd.DataFrame | None = None, routed_today: pd.DataFrame | None = None,
                     previous: pd.DataFrame | None = None, client=None) -> ScoredLeads:
    """Score the open leads (canonical rows) with ``scorer`` on features from ``online`` (the snapshot this run
    saves, so batch and real-time scores cannot differ). ``previous``: the last published scores (export names),
    for each lead's trend. With ``seen`` (each lead's inputs as last published), only leads whose inputs or model
    changed are scored; the others keep their previous published row. Every open lead is published and routed;
    routing respects today's earlier routes. With a Dask ``client``, the scorer runs on its workers."""
    features = open_lead_features(scorer, online, open_leads, cfg)
    # A passthrough named "campaign" or "source" is that role's own column (the config allows no other), which is
    # published anyway.
    passthrough = [export_column(c) for c in cfg.data.leads.passthrough if c not in ("campaign", "source")]
    extra = [c for c in ("campaign", "source", *passthrough) if c in open_leads.columns]
    features[extra] = open_leads[extra].to_numpy()
    features["input_hash"] = scorer.input_hash(features)  # for --since-last and the ledger, computed once
    before = (previous.drop_duplicates("lead_id").set_index("lead_id") if previous is not None and len(previous)
              else None)
    todo = features
    if seen is not None:
        todo = changed_since(seen, features, scorer.labels_for(features["segment"]) if "segment" in features
                             else scorer.model_version)
        if before is not None:  # a lead missing from the last publication cannot be carried
            todo = features[features.index.isin(todo.index) | ~features["lead_id"].isin(before.index)]
        else:
            todo = features
    scores = scorer.score(todo, scored_at, cfg.scoring.reason_tiers, extra_columns=[*extra, "input_hash"],
                          client=client)
    scores = scores.rename(columns=export_name)
    unchanged = len(features) - len(todo)
    scores["rescored"] = True
    if unchanged:
        kept = features.loc[~features.index.isin(todo.index), ["lead_id", "input_hash"]]
        carried = before.reindex(kept["lead_id"].to_numpy()).reset_index()
        carried["input_hash"] = kept["input_hash"].to_numpy()
        carried = carried.reindex(columns=scores.columns).assign(rescored=False)
        scores = pd.concat([scores, carried], ignore_index=True)
        order = np.lexsort((scores["lead_id"].to_numpy().astype(str), -scores["probability"].to_numpy()))
        scores = scores.iloc[order].reset_index(drop=True)
        scores["rank"] = np.arange(1, len(scores) + 1)
    # Every row against its previous published one, rescored or carried (a carried row has not moved: steady).
    earlier = (before["probability"].reindex(scores["lead_id"].to_numpy()).to_numpy(np.float64)
               if before is not None else np.full(len(scores), np.nan))
    scores.insert(scores.columns.get_loc("rank") + 1, "trend", trend(scores["probability"].to_numpy(), earlier))
    rescored = scores.pop("rescored").to_numpy(bool)
    scores = scores.drop(columns=["route"], errors="ignore")
    route, queues = route_leads(scores, routing_columns(cfg.routing, cfg.data.leads, open_leads, scores["lead_id"]),
                                cfg.routing, routed_today)
    scores.insert(scores.columns.get_loc("fit_reasons") + 1, "route", route)
    return ScoredLeads(scores, queues, len(features), unchanged, rescored)


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
        "scored": int(run.considered - run.unchanged),
        "published": int(len(run.scores)),
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
