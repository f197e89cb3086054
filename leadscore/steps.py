"""The pipeline's steps as plain functions: each reads its inputs under ``home``, writes its outputs there and
returns a small summary. Prefect flows (``flows/``) and the CLI only call these.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from leadscore.config import Config
from leadscore.contract import export_column, export_name
from leadscore.errors import DataError
from leadscore.paths import Home, write_text_atomic

log = logging.getLogger("leadscore")


def _home(cfg: Config) -> Home:
    return Home(cfg.home).ensure()


def data_fingerprint(paths: list[Path]) -> str:
    """sha256 over the export files' bytes (name order), so a run can say exactly which data it saw."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _input_paths(cfg: Config) -> list[Path]:
    d = cfg.data
    return [t.path for t in (d.leads, d.outcomes, d.activities, d.campaigns) if t is not None]


def ingest_step(cfg: Config, run_id: str) -> dict:
    """Export files -> canonical Parquet tables + quarantine; fails if too much was quarantined."""
    from leadscore.ingest import ingest, write_canonical, write_quarantine

    home = _home(cfg)
    result = ingest(cfg)
    quarantine_dir = home.quarantine / run_id
    written = write_quarantine(result, quarantine_dir)
    share = result.quarantine_share()
    summary = {
        "run_id": run_id,
        "as_of": result.as_of.isoformat() if result.as_of else None,
        "counts": result.counts,
        "files": result.files,
        "quarantine_reasons": result.reasons(),
        "quarantine_files": {k: str(v) for k, v in written.items()},
        "quarantined_share": round(share, 6),
        "data_fingerprint": data_fingerprint(_input_paths(cfg)),
        "config_hash": cfg.digest(),
    }
    leads = result.counts["leads"]
    if leads["kept"] == 0:
        raise DataError(f"data.leads: none of the {leads['rows_in']:,} lead rows can be used"
                        + (f" ({_common_reasons(result)}); see {written['leads']} for each row and its reason"
                           if "leads" in written else ": the file has no rows"))
    if share > cfg.data.max_quarantine_share:
        raise DataError(
            f"{share:.1%} of input rows were quarantined, more than data.max_quarantine_share = "
            f"{cfg.data.max_quarantine_share:.1%}; see {quarantine_dir} for each row and its reason "
            f"({_common_reasons(result)})"
        )
    write_canonical(result, home.canonical)
    write_text_atomic(home.canonical / "manifest.json", json.dumps(summary, indent=2))
    kept = result.counts["leads"]["kept"]
    bad = sum(c["quarantined"] for c in result.counts.values())
    log.info("ingest: %s leads kept, %s rows quarantined%s", f"{kept:,}", f"{bad:,}",
             f" (see {quarantine_dir})" if bad else "")
    return summary


def _common_reasons(result, top: int = 3) -> str:
    """The commonest kinds of reason ("non-numeric Employees", without the values), for a one-line error."""
    kinds: dict[str, int] = {}
    for table, reasons in result.reasons().items():
        for reason, n in reasons.items():
            kind = f"{table}: {reason.split(': ', 1)[0]}"
            kinds[kind] = kinds.get(kind, 0) + n
    best = sorted(kinds.items(), key=lambda kv: -kv[1])[:top]
    return "most often " + "; ".join(f"{k} ({n:,})" for k, n in best)


def read_ingest_manifest(home: Home) -> dict:
    path = home.canonical / "manifest.json"
    if not path.is_file():
        raise DataError(f"no ingested data in {home.canonical}; run `leadscore ingest --config FILE` first")
    return json.loads(path.read_text(encoding="utf-8"))


def features_step(cfg: Config) -> dict:
    from features.build import build_features
    from leadscore.ingest import read_canonical

    home = _home(cfg)
    manifest = read_ingest_manifest(home)
    as_of = datetime.fromisoformat(manifest["as_of"])
    fs = build_features(read_canonical(home.canonical, lazy=True), cfg, as_of, out=home.features_file,
                        extra_metadata={"as_of": as_of.isoformat(), "config_hash": cfg.digest()},
                        spill_dir=home.spill)
    c = fs.counts
    if fs.mode == "snapshot":
        log.info("features: snapshot export (outcome from data.leads.label): random stratified split, "
                 "no history or engagement features")
    log.info("features: %d features for %s leads (%s positive, %s negative, %s immature, %s open)",
             len(fs.features), f"{c['leads']:,}", f"{c['positive']:,}", f"{c['negative']:,}", f"{c['immature']:,}",
             f"{c['open']:,}")
    return {"as_of": as_of.isoformat(), "features": fs.features, "counts": fs.counts}


def train_step(cfg: Config, run_id: str) -> dict:
    from features.store import load_feature_set
    from models import registry
    from models.gate import decide
    from models.train import train_model

    home = _home(cfg)
    fs, meta = load_feature_set(home.features_file)
    ingest = read_ingest_manifest(home)
    result = train_model(fs, cfg)
    result.metrics.update(_truth_metrics(cfg, result.test_frame))
    for name, metrics in result.baselines.items():
        result.metrics.update({f"baseline_{name}_{k}": v for k, v in metrics.items() if k != "base_rate"})
    result.split_counts.update({f"labels_{k}": v for k, v in fs.counts.items()})
    tags = {
        "leadscore_run_id": run_id,
        "git_sha": git_sha(),
        "config_hash": cfg.digest(),
        "data_fingerprint": ingest["data_fingerprint"],
        "as_of": meta["as_of"],
        "horizon_days": str(cfg.label.horizon_days),
        "features": json.dumps(fs.features),
        "label_counts": json.dumps(fs.counts),
    }
    check_file = home.runs / run_id / "single_feature_auc.csv"
    check_file.parent.mkdir(parents=True, exist_ok=True)
    result.single_feature.to_csv(check_file, index=False)
    report_file = _write_evaluation(result, fs, cfg, home.runs / run_id / "evaluation.html")
    ref = registry.log_training_run(home, result, tags, run_name=f"train-{run_id}",
                                    artifacts={"leakage": check_file, "evaluation": report_file,
                                               "plots": report_file.parent / "plots"})
    registry.set_alias(home, ref.version, registry.CHALLENGER)
    compared = _champion_comparison(home, fs, result.test_frame)
    champion_auc = compared[0] if compared else None
    gate_metrics = {**result.metrics, "roc_auc": compared[1]} if compared else result.metrics
    decision = decide(gate_metrics, champion_auc, cfg.gate.auc_tolerance, cfg.gate.max_ece,
                      {name: m["roc_auc"] for name, m in result.baselines.items()})
    registry.tag_version(home, ref.version, {"gate": "passed" if decision.promote else "refused: " + "; ".join(decision.reasons)})
    top = ", ".join(f"{fs.labels.get(r.feature, r.feature)} {r.auc:.3f}" for r in result.single_feature.head(5).itertuples())
    log.info("train: strongest single features (ROC AUC): %s", top)
    m = result.metrics
    if "roc_auc_truth" in m:
        log.info("train: ROC AUC of the true probabilities on the same test leads: %.3f", m["roc_auc_truth"])
    log.info("train: model version %s against the baselines on the same %s test leads:\n%s", ref.version,
             f"{result.split_counts['test_leads']:,}", comparison_table({"model": m, **result.baselines}))
    if decision.promote:
        against = (f"ROC AUC {compared[1]:.3f} vs the champion's {champion_auc:.3f} on the same leads" if compared
                   else "judged against the baselines")
        previous = registry.promote(home, ref.version, reason=f"passed the gate ({against})", who="leadscore train")
        log.info("train: version %s is champion%s", ref.version, f" (was version {previous})" if previous else "")
    else:
        log.warning("train: version %s stays challenger: %s", ref.version, "; ".join(decision.reasons))
    log.info("train: evaluation report %s", report_file)
    return {"model_version": ref.version, "mlflow_run_id": ref.run_id, "metrics": m, "split": result.split_counts,
            "evaluation": str(report_file), "promoted": decision.promote, "gate_reasons": decision.reasons,
            "champion_auc": champion_auc, "compared_auc": compared[1] if compared else None}


COMPARED = (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("log_loss", "log loss"), ("brier", "Brier"),
            ("ece", "ECE"), ("lift_top_decile", "lift@10%"), ("tier_a_win_share", "wins in A"))


def comparison_table(rows: dict[str, dict[str, float]]) -> str:
    """A short fixed-width table: one line per model, the metrics a reader compares."""
    head = f"{'':<12}" + "".join(f"{label:>11}" for _, label in COMPARED)
    lines = [head] + [f"{name:<12}" + "".join(f"{m.get(key, float('nan')):>11.4f}" for key, _ in COMPARED)
                      for name, m in rows.items()]
    return "\n".join(lines)


def _write_evaluation(result, fs, cfg: Config, path: Path) -> Path:
    import pandas as pd

    from models.evaluation import evaluation_charts, render_evaluation

    booster = (result.model.evaluated or result.model).booster  # the model the page evaluates
    importance = pd.Series(booster.feature_importance("gain"), index=booster.feature_name())
    importance.index = [fs.labels.get(f, f) for f in importance.index]
    single = result.single_feature.assign(feature=[fs.labels.get(f, f) for f in result.single_feature["feature"]])
    tf = result.test_frame
    if fs.mode == "snapshot":
        what = f"{len(tf):,} test leads (random stratified split of a snapshot export); outcome: the label column."
    else:
        what = (f"{len(tf):,} test leads, the newest mature ones (created {tf['created_at'].min():%Y-%m-%d} to "
                f"{tf['created_at'].max():%Y-%m-%d}); outcome: a win within {cfg.label.horizon_days} days.")
    y, tiers = tf["label"].to_numpy(), tf["tier"].to_numpy()
    charts = evaluation_charts(y, {"model": tf["probability"].to_numpy(), **result.baseline_probability}, tiers,
                               importance)
    plots = path.parent / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for name, svg in charts.items():  # each chart also stands alone, as an MLflow artifact
        (plots / f"{name}.svg").write_text(svg, encoding="utf-8")
    page = render_evaluation("Lead-quality model: evaluation", what, {"model": result.metrics, **result.baselines},
                             y, charts, tiers, single)
    path.write_text(page, encoding="utf-8")
    return path


MIN_COMPARED = 300  # fewer unseen test leads than this make an AUC comparison mostly noise


def _champion_comparison(home: Home, fs, test_frame) -> tuple[float, float] | None:
    """(champion's ROC AUC, new model's ROC AUC) on the same test leads, ones the champion was not fitted on; or
    None (no champion, too few such leads, or it cannot score the new feature set): the new model is then judged
    against the baselines."""
    from sklearn.metrics import roc_auc_score

    from models import registry

    if registry.champion_version(home) is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    champion, ref = registry.load_model(home)
    # The registered champion was refit on every lead mature at its time, so it would have seen these test leads
    # and had more recent history than the new evaluated model. The fair comparison is between the two evaluated
    # models (same recipe shape: fitted without their validation and test leads), on leads neither has seen.
    seen_until = None  # a model registered before refitting existed was fitted on its train slice only
    if getattr(champion, "evaluated", None) is not None:
        champion, seen_until = champion.evaluated, champion.evaluated_through
    if seen_until is not None:
        test_frame = test_frame[test_frame["created_at"] > seen_until]
        if len(test_frame) < MIN_COMPARED or test_frame["label"].nunique() < 2:
            log.info("train: only %d test leads are newer than what champion version %s was fitted on; the new model "
                     "is judged against the baselines", len(test_frame), ref.version)
            return None
    # Only the test leads, filtered in Arrow: converting the whole frame again would double the step's work.
    test_ids = pa.array(test_frame["lead_id"].to_numpy(dtype=object), pa.string())
    rows = fs.frame.filter(pc.is_in(fs.frame["lead_id"], value_set=test_ids)).to_pandas()
    rows = rows.set_index("lead_id").loc[test_frame["lead_id"]].reset_index()
    if any(c not in rows.columns for c in champion.features):
        log.warning("train: champion version %s needs features this run does not build; not compared", ref.version)
        return None
    y = test_frame["label"].to_numpy()
    return (float(roc_auc_score(y, champion.probability(rows))),
            float(roc_auc_score(y, test_frame["probability"].to_numpy())))


def _truth_metrics(cfg: Config, test_frame) -> dict[str, float]:
    """Known truth (synthetic data only): read after training, compared with the test leads' probabilities."""
    ev = cfg.evaluation
    if ev.truth_path is None:
        return {}
    import pyarrow.csv as pacsv

    from models.metrics import truth_metrics

    if not ev.truth_path.is_file():
        raise DataError(f"evaluation.truth_path: file {ev.truth_path} not found")
    truth = pacsv.read_csv(ev.truth_path, convert_options=pacsv.ConvertOptions(
        include_columns=[ev.truth_id, ev.truth_probability], column_types={ev.truth_id: "string"})).to_pandas()
    joined = test_frame.merge(truth, left_on="lead_id", right_on=ev.truth_id, how="inner")
    if len(joined) < len(test_frame):
        raise DataError(f"evaluation.truth_path: {len(test_frame) - len(joined)} test leads have no row in {ev.truth_path}")
    return truth_metrics(joined["label"].to_numpy(), joined["probability"].to_numpy(),
                         joined[ev.truth_probability].to_numpy())


def _scored_frame(cfg: Config, home: Home, scored_at: datetime):
    """Every lead scored by the champion, with what the campaign report groups and counts by."""
    from features.store import load_feature_set
    from serving.scorer import LeadScorer

    fs, meta = load_feature_set(home.features_file)
    scorer = LeadScorer.from_registry(home)
    scorer.check_schema(fs.categorical, fs.numeric)
    frame = fs.frame.to_pandas()
    keep = ["campaign", "source", "created_at", "mature", "label", "is_open"]
    scores = scorer.score(frame, scored_at, reason_tiers=(), extra_columns=[c for c in keep if c in frame.columns])
    return scores, scorer, meta


def _routing_columns(cfg: Config, raw, lead_ids):
    """The export columns routing filters on, under their export names, in the order of ``lead_ids``."""
    import pandas as pd

    names = sorted({c for q in cfg.routing.queues for c in q.where})
    rows = raw.set_index("lead_id").loc[lead_ids]
    return pd.DataFrame({n: rows[cfg.data.leads.internal_column(n)].to_numpy() for n in names})


def _open_leads(home: Home, frame):
    """The canonical rows (export fields) of the open leads."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pa.array(frame.loc[frame["is_open"], "lead_id"].to_numpy(dtype=object), pa.string())
    leads = pq.read_table(home.canonical / "leads.parquet")
    return leads.filter(pc.is_in(leads["lead_id"], value_set=ids)).to_pandas()


def _changed_since_last(home: Home, scorer, frame):
    """Rows of ``frame`` whose inputs or model differ from their latest ledger entry (or that have none)."""
    from serving import ledger

    seen = ledger.read(home.ledger, columns=["lead_id", "input_hash", "model_version", "scored_at"])
    if seen.empty:
        return frame
    latest = seen.sort_values("scored_at").drop_duplicates("lead_id", keep="last").set_index("lead_id")
    before = latest.reindex(frame["lead_id"].to_numpy())
    same = ((before["input_hash"].to_numpy() == frame["input_hash"].to_numpy())
            & (before["model_version"].to_numpy() == scorer.model_version))
    return frame[~same]


def score_step(cfg: Config, run_id: str, since_last: bool = False) -> dict:
    """Score the open leads (no win or loss yet) with the champion, route them and publish them."""
    import pandas as pd

    from features.online import OnlineFeatures, save_snapshot
    from features.store import load_feature_set
    from serving import ledger
    from serving.publish import frame_writers, publish_run, reconcile_scores
    from serving.routing import route_leads
    from serving.scorer import LeadScorer

    home = _home(cfg)
    mended = reconcile_scores(home.scores, home.ledger)
    if any(mended.values()):
        log.warning("score: an earlier run was stopped while publishing; mended: %s",
                    ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in mended.items() if v))
    if cfg.publish.sql_url:
        from serving.sql_sink import check_connection

        check_connection(cfg.publish.sql_url)  # before anything is published
    scored_at = datetime.now(timezone.utc).replace(microsecond=0)
    ingest = read_ingest_manifest(home)
    fs, meta = load_feature_set(home.features_file)
    scorer = LeadScorer.from_registry(home)
    scorer.check_schema(fs.categorical, fs.numeric)
    frame = fs.frame.to_pandas()
    # The open leads' features come from the snapshot this run saves for the real-time API, through the same
    # code the API uses: batch and real-time scores cannot drift apart. (A test checks that these features
    # equal the training features of the same leads.)
    snapshot = _snapshot(cfg, home, frame, meta, fs.labels)
    online = OnlineFeatures(*snapshot)
    raw = _open_leads(home, frame)
    extra = [c for c in ("campaign", "source", *map(export_column, cfg.data.leads.passthrough)) if c in raw.columns]
    features = pd.DataFrame(online.build(raw, cfg, scorer.model.features))
    features[extra] = raw[extra].to_numpy()
    features["input_hash"] = scorer.input_hash(features)  # for --since-last and the ledger, computed once
    todo = _changed_since_last(home, scorer, features) if since_last else features
    scores = scorer.score(todo, scored_at, cfg.scoring.reason_tiers, extra_columns=[*extra, "input_hash"])

    routed_today = ledger.routed_on(home.ledger, scored_at.strftime("%Y-%m-%d"))
    route, queues = route_leads(scores, _routing_columns(cfg, raw, scores["lead_id"]), cfg.routing, routed_today)
    scores.insert(scores.columns.get_loc("reasons") + 1, "route", route)

    drift = _drift_report(cfg, scorer, frame, datetime.fromisoformat(meta["as_of"]), fs.labels)
    leads = ingest["counts"]["leads"]
    rows = {
        "leads_in": leads["rows_in"],
        "quarantined": leads["quarantined"],
        "created_after_as_of": fs.counts.get("leads_after_as_of", 0),
        "closed": int(len(frame) - len(features)),
        "unchanged_since_last": int(len(features) - len(todo)),
        "scored": int(len(scores)),
    }
    manifest = {
        "kind": "scores",
        "model_name": "lead-quality",
        "model_version": scorer.model_version,
        "model_sha256": scorer.model_sha256,
        "config_hash": cfg.digest(),
        "data_fingerprint": ingest["data_fingerprint"],
        "as_of": meta["as_of"],
        "scored_at": scored_at.isoformat(),
        "mode": "since-last" if since_last else "all open leads",
        "rows": rows,
        "tiers": scores["tier"].value_counts().reindex(list("ABCD"), fill_value=0).to_dict(),
        "queues": queues.to_dict("records"),
        "drift": {"max_feature_psi": drift["max_feature_psi"], "score_psi": drift["score_psi"],
                  "drifted": [f["feature"] for f in drift["features"] if f["drifted"]]} if drift["available"] else None,
        "input_rows": ingest["counts"],
        "quarantine_files": ingest["quarantine_files"],
    }
    published = scores.drop(columns=["input_hash"]).rename(columns=export_name)
    writers = {**frame_writers(published, "scores"), **frame_writers(queues, "routing", parquet=False),
               "drift.json": lambda path: path.write_text(json.dumps(drift, indent=2), encoding="utf-8")}
    pending = []  # the ledger holds this run's rows before LATEST names it, so no reader sees unrecorded scores
    folder = publish_run(home.scores, run_id, writers, manifest, cfg.publish.keep_runs,
                         before_latest=lambda _: pending.append(ledger.append(home.ledger, run_id, scores)))
    ledger.commit(pending[0])
    save_snapshot(home.snapshot, *snapshot)
    sql_rows = None
    if cfg.publish.sql_url:
        from serving.sql_sink import upsert_scores

        sql_rows = upsert_scores(cfg.publish.sql_url, cfg.publish.sql_table, published, run_id)

    what = "changed or new open leads" if since_last else "open leads"
    log.info("score: %s %s scored with model version %s -> %s", f"{len(scores):,}", what, scorer.model_version, folder)
    if since_last:
        log.info("score: %s open leads unchanged since their last score, not rescored", f"{rows['unchanged_since_last']:,}")
    log.info("score: routing\n%s", queues.to_string(index=False))
    names = [f["label"] for f in drift["features"] if f["drifted"]]
    if drift.get("score_drifted"):
        names.insert(0, f"the score (PSI {drift['score_psi']:.3f})")
    if names:
        log.warning("score: drift above drift.psi_warn = %s: %s (see %s)", cfg.drift.psi_warn, ", ".join(names[:8]),
                    folder / "drift.json")
    if sql_rows is not None:
        log.info("score: %s rows upserted into table %s", f"{sql_rows:,}", cfg.publish.sql_table)
    return {"published": str(folder), "run_id": run_id, "leads_scored": len(scores),
            "model_version": scorer.model_version, "rows": rows, "queues": queues.to_dict("records"),
            "tiers": manifest["tiers"], "drift": drift, "files": sorted(writers) + ["manifest.json"],
            "sql_rows": sql_rows}


def _snapshot(cfg: Config, home: Home, frame, meta: dict, labels: dict[str, str]):
    """The history scoring needs (features.online): manifest, leads and activities tables."""
    import pyarrow.parquet as pq

    from features.online import snapshot_tables

    acts = home.canonical / "activities.parquet"
    activities = pq.read_table(acts, columns=["lead_id", "type", "occurred_at"]) if acts.is_file() else None
    return snapshot_tables(frame, activities, cfg, datetime.fromisoformat(meta["as_of"]), labels)


def _drift_report(cfg: Config, scorer, frame, as_of: datetime, labels: dict[str, str]) -> dict:
    """PSI of the newest arrivals (drift.window_days) against the model's reference. Calendar months and
    running counts (earlier leads/wins) move with time by construction: reported, never warned about."""
    import pandas as pd

    if "created_at" in frame.columns and frame["created_at"].notna().any():
        since = pd.Timestamp(as_of) - pd.Timedelta(days=cfg.drift.window_days)
        window = frame[frame["created_at"] >= since]
        what = f"leads created in the {cfg.drift.window_days} days before {as_of:%Y-%m-%d}"
    else:  # all leads: the open ones alone are selected by their outcome
        window, what = frame, "every lead (the export has no creation time)"
    psi = scorer.drift(window, scorer.model.probability(window) if len(window) else [])
    if psi is None:
        return {"available": False, "reason": "no recent leads, or the model was trained without a drift reference",
                "features": []}
    warn = cfg.drift.psi_warn
    trend = lambda f: f == "created_month" or f.endswith(("_prior_leads", "_prior_wins"))  # noqa: E731
    features = sorted(({"feature": f, "label": labels.get(f, f), "psi": round(v, 4), "trend": trend(f),
                        "drifted": v > warn and not trend(f)} for f, v in psi.items() if f != "score"),
                      key=lambda r: -r["psi"])
    return {"available": True, "psi_warn": warn, "compared": what, "compared_rows": int(len(window)),
            "reference": "validation and test leads of the model version (the newest leads with known outcomes)",
            "reference_rows": int(getattr(scorer.model.reference, "rows_", 0)),
            "score_psi": round(psi["score"], 4), "score_drifted": psi["score"] > warn,
            "max_feature_psi": max((f["psi"] for f in features if not f["trend"]), default=0.0), "features": features}


def report_step(cfg: Config, run_id: str) -> dict:
    """Campaign and source lead quality over every lead, published beside the scores."""
    import pandas as pd

    from leadscore.ingest import read_canonical
    from leadscore.paths import read_latest
    from reports.campaign_page import render_report
    from reports.campaign_quality import quality_table, summary_lines, weekly_trend
    from serving.publish import frame_writers, publish_run

    home = _home(cfg)
    scored_at = datetime.now(timezone.utc).replace(microsecond=0)
    scores, scorer, meta = _scored_frame(cfg, home, scored_at)
    as_of = pd.Timestamp(meta["as_of"])
    horizon = cfg.label.horizon_days
    tables = read_canonical(home.canonical, lazy=True)  # only the small campaigns table is read
    costs = tables["campaigns"].to_table().to_pandas() if "campaigns" in tables else None
    campaigns = quality_table(scores, "campaign", costs, as_of, horizon)
    sources = quality_table(scores, "source", None, as_of, horizon)
    campaign_trend = weekly_trend(scores, "campaign", as_of)
    source_trend = weekly_trend(scores, "source", as_of)

    before = read_latest(home.campaign_reports)
    previous = None
    if before is not None and (before / "campaign_quality.csv").is_file():
        previous = pd.read_csv(before / "campaign_quality.csv", dtype={"campaign": str})
    summary = summary_lines(campaigns, previous, before.name if before else None)
    notes = (f"Attribution: {cfg.report.attribution.replace('_', ' ')} (a lead belongs to the campaign in its "
             f"{cfg.data.leads.campaign or 'campaign'!r} column). Expected closes are sums of calibrated probabilities "
             f"of a win within {horizon} days, with a 90% interval (exact Poisson-binomial up to 2,000 leads, normal "
             "approximation above). Actual closes count matured leads only (created at least "
             f"{horizon} days before {as_of:%Y-%m-%d}) and are compared with the expected closes of those same leads. "
             "The early read compares campaigns whose leads are mostly still open with the average lead: flagged when "
             "the difference is larger than chance in the outcomes would give (90%). Cost per expected close uses "
             "the campaign's total cost from the campaigns table.")
    page = render_report(
        campaigns, sources, campaign_trend, source_trend, summary, "Campaign lead quality",
        f"{len(scores):,} leads as of {as_of:%Y-%m-%d}, model version {scorer.model_version}.", notes)
    trend = pd.concat([campaign_trend.rename(columns={"campaign": "name"}).assign(dimension="campaign"),
                       source_trend.rename(columns={"source": "name"}).assign(dimension="source")])
    writers = {
        **frame_writers(campaigns, "campaign_quality", parquet=False),
        **frame_writers(sources, "source_quality", parquet=False),
        **frame_writers(trend[["dimension", "name", "week", "leads", "mean_probability"]], "weekly_trend", parquet=False),
        "index.html": lambda path: path.write_text(page, encoding="utf-8"),
    }
    manifest = {"kind": "campaign_quality", "model_version": scorer.model_version, "as_of": meta["as_of"],
                "attribution": cfg.report.attribution, "leads": len(scores), "campaigns": len(campaigns),
                "sources": len(sources), "summary": summary}
    folder = publish_run(home.campaign_reports, run_id, writers, manifest, cfg.publish.keep_runs)
    log.info("report: %d campaigns, %d sources -> %s", len(campaigns), len(sources), folder / "index.html")
    for line in summary:
        log.info("report: %s", line)
    top = campaigns.head(10)[["campaign", "leads", "expected_closes", "expected_closes_low", "expected_closes_high",
                              "actual_closes", "cost_per_expected_close", "early_read"]]
    return {"published": str(folder), "run_id": run_id, "campaigns": len(campaigns), "summary": summary,
            "top": top.astype(object).where(top.notna(), None).to_dict("records")}


def summarize_outputs(cfg: Config) -> dict[str, str]:
    """Where a user finds every output of the last run."""
    from leadscore.paths import read_latest

    home = Home(cfg.home)
    scores = read_latest(home.scores)
    report = read_latest(home.campaign_reports)
    return {
        "scores": str(scores / "scores.csv") if scores else "(none yet)",
        "manifest": str(scores / "manifest.json") if scores else "(none yet)",
        "campaign report": str(report / "index.html") if report else "(none yet)",
        "quarantine": str(home.quarantine),
        "mlflow db": str(home.mlflow_db),
        "mlflow ui": f"{Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri {home.tracking_uri} --port 5000",
    }
