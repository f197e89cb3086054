"""A scoring run's work between reading its inputs and publishing: open leads -> features -> scores, routes and
the manifest that accounts for every lead of the export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features.segments import segment_of
from leadscore.cluster import again_if_lost, cut, map_parts, send_parts, total_threads
from leadscore.config import Config
from leadscore.contract import export_column, export_name
from serving.ledger import changed_since, latest_inputs
from serving.routing import route_leads, routing_columns
from serving.scorer import ranked


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


def lead_inputs(scorer, online, open_leads: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Each open lead's features, the lead columns published beside its score and ``input_hash``: everything
    its score is made of. Lead by lead, so parts of the leads give the parts of the whole."""
    features = open_lead_features(scorer, online, open_leads, cfg)
    columns = published_columns(open_leads, cfg)
    features[columns] = open_leads[columns].to_numpy()
    features["input_hash"] = scorer.input_hash(features)  # for --since-last and the ledger, computed once
    return features


def published_columns(open_leads: pd.DataFrame, cfg: Config) -> list[str]:
    """The lead columns published as they are: campaign, source and the configured passthrough columns. (A
    passthrough named "campaign" or "source" is that role's own column: the config allows no other.)"""
    passthrough = [export_column(c) for c in cfg.data.leads.passthrough if c not in ("campaign", "source")]
    return [c for c in ("campaign", "source", *passthrough) if c in open_leads.columns]


def to_rescore(keys: pd.DataFrame, scorer, seen: pd.DataFrame | None, before: pd.DataFrame | None) -> np.ndarray:
    """Which leads (``keys``: lead_id, input_hash and segment if any) this run scores: all, or with ``seen``
    (--since-last: each lead's latest inputs, :func:`serving.ledger.latest_inputs`) those whose inputs or model
    changed and those the last publication lacks."""
    if seen is None:
        return np.ones(len(keys), bool)
    labels = scorer.labels_for(keys["segment"]) if "segment" in keys else scorer.model_version
    todo = keys.index.isin(changed_since(seen, keys, labels).index)
    if before is not None:  # a lead missing from the last publication cannot be carried
        return todo | ~keys["lead_id"].isin(before.index).to_numpy()
    return np.ones(len(keys), bool)


def score_open_leads(scorer, online, open_leads: pd.DataFrame, cfg: Config, scored_at: datetime,
                     seen: pd.DataFrame | None = None, routed_today: pd.DataFrame | None = None,
                     previous: pd.DataFrame | None = None, client=None) -> ScoredLeads:
    """Score the open leads (canonical rows) with ``scorer`` on features from ``online`` (the snapshot this run
    saves, so batch and real-time scores cannot differ). ``previous``: the last published scores (export names),
    for each lead's trend. With ``seen`` (each lead's inputs as last published), only leads whose inputs or model
    changed are scored; the others keep their previous published row. Every open lead is published and routed;
    routing respects today's earlier routes. With a Dask ``client``, the workers build the features and score
    them, part by part; ranks, trends and routes are set here."""
    before = (previous.drop_duplicates("lead_id").set_index("lead_id") if previous is not None and len(previous)
              else None)
    seen = latest_inputs(seen) if seen is not None else None  # once, not once per part
    extra = [*published_columns(open_leads, cfg), "input_hash"]
    if client is None or open_leads.empty:
        # The parts a cluster's workers would take, one after the other: one part's features in memory at a time.
        done = [_score_part_here(scorer, online, part, cfg, scored_at, seen, before, extra)
                for part in cut(open_leads, cfg.engine.rows_per_part) or [open_leads]]
        keys = pd.concat([d[0] for d in done], ignore_index=True)
        todo = np.concatenate([d[1] for d in done])
        scores = _joined([d[2] for d in done])
    else:
        keys, todo, scores = _score_on_cluster(client, scorer, online, open_leads, cfg, scored_at, seen, before, extra)
    scores = ranked(scores).rename(columns=export_name)
    unchanged = int((~todo).sum())
    scores["rescored"] = True
    if unchanged:
        kept = keys.loc[~todo, ["lead_id", "input_hash"]]
        carried = before.reindex(kept["lead_id"].to_numpy()).reset_index()
        carried["input_hash"] = kept["input_hash"].to_numpy()
        carried = carried.reindex(columns=scores.columns).assign(rescored=False)
        scores = ranked(pd.concat([scores, carried], ignore_index=True))
    # Every row against its previous published one, rescored or carried (a carried row has not moved: steady).
    earlier = (before["probability"].reindex(scores["lead_id"].to_numpy()).to_numpy(np.float64)
               if before is not None else np.full(len(scores), np.nan))
    scores.insert(scores.columns.get_loc("rank") + 1, "trend", trend(scores["probability"].to_numpy(), earlier))
    rescored = scores.pop("rescored").to_numpy(bool)
    scores = scores.drop(columns=["route"], errors="ignore")
    route, queues = route_leads(scores, routing_columns(cfg.routing, cfg.data.leads, open_leads, scores["lead_id"]),
                                cfg.routing, routed_today)
    scores.insert(scores.columns.get_loc("fit_reasons") + 1, "route", route)
    return ScoredLeads(scores, queues, len(keys), unchanged, rescored)


def _score_on_cluster(client, scorer, online, open_leads: pd.DataFrame, cfg: Config, scored_at: datetime,
                      seen: pd.DataFrame | None, before: pd.DataFrame | None, extra: list[str]):
    """The workers build the open leads' features, in parts of at most ``engine.rows_per_part`` leads, and keep
    them: from the snapshot's shared history (sent to each worker once, with the scorer) and each part's own
    activities and stage changes (sent with the part). Only each lead's input hash comes here, to choose the
    leads to rescore; the workers then score those. The features never cross to the driver. Returns (keys, todo,
    unranked score rows)."""
    parts = cut(open_leads, cfg.engine.rows_per_part, total_threads(client))
    own = online.own_events([part["lead_id"].to_numpy() for part in parts])
    shared_history = online.without_own()

    def attempt():
        shared = client.scatter([scorer, shared_history, cfg], broadcast=True, hash=False, direct=True)
        inputs = client.map(_inputs_part, send_parts(client, list(zip(parts, own))), scorer=shared[0],
                            online=shared[1], cfg=shared[2], pure=False)
        key_parts = map_parts(client, _keys, inputs)
        keys = pd.concat(key_parts, ignore_index=True)
        todo = to_rescore(keys, scorer, seen, before)
        bounds = np.cumsum([0, *(len(k) for k in key_parts)])
        picks = [todo[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        scored = map_parts(client, _score_part, inputs, picks, scorer=shared[0], scored_at=scored_at,
                           tiers=cfg.scoring.reason_tiers, extra=extra)
        return keys, todo, _joined(scored)

    return again_if_lost(client, "scoring the open leads", attempt)


def _score_part_here(scorer, online, leads: pd.DataFrame, cfg: Config, scored_at: datetime,
                     seen: pd.DataFrame | None, before: pd.DataFrame | None, extra: list[str]):
    """One part of the open leads on this machine: (keys, todo, unranked score rows)."""
    features = lead_inputs(scorer, online, leads, cfg)
    keys = _keys(features)
    todo = to_rescore(keys, scorer, seen, before)
    return keys, todo, _score_part(features, todo, scorer, scored_at, cfg.scoring.reason_tiers, extra)


def _joined(scored: list[pd.DataFrame]) -> pd.DataFrame:
    """Score rows of parts as one frame. Parts with no lead to rescore left out: joined with empty frames, text
    columns would change type."""
    return pd.concat([part for part in scored if len(part)] or scored[:1], ignore_index=True)


def _inputs_part(part: tuple[pd.DataFrame, dict], scorer, online, cfg: Config) -> pd.DataFrame:
    leads, own = part
    return lead_inputs(scorer, online.with_own(own), leads, cfg)


def _keys(features: pd.DataFrame) -> pd.DataFrame:
    """What choosing the leads to rescore reads."""
    return features[[c for c in ("lead_id", "input_hash", "segment") if c in features.columns]]


def _score_part(features: pd.DataFrame, pick: np.ndarray, scorer, scored_at: datetime, tiers, extra) -> pd.DataFrame:
    return scorer.rows(features[pick], scored_at, tiers, extra_columns=extra)


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
