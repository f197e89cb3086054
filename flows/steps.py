"""The pipeline's steps: what each reads under ``home``, which stage functions it calls in what order, and what
it writes. No domain logic lives here (that is the stages'); Prefect flows (``flows.pipeline``) and the CLI
only call these, and tests call them directly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from leadscore import cluster
from leadscore.config import Config
from leadscore.errors import ConfigError, DataError, LeadscoreError
from leadscore.paths import Home, read_latest, write_text_atomic
from leadscore.runinfo import data_fingerprint, git_sha, wait_policy
from leadscore.spreadsheet import write_csv

log = logging.getLogger("leadscore")

STEPS = ("ingest", "features", "train", "score", "report")  # the whole pipeline, in order


def read_ingest_manifest(home: Home) -> dict:
    path = home.canonical / "manifest.json"
    if not path.is_file():
        raise DataError(f"no ingested data in {home.canonical}; run `leadscore ingest --config FILE` first")
    return json.loads(path.read_text(encoding="utf-8"))


def file_stats(cfg: Config) -> dict[str, list[int]]:
    """Each export file's size and modification time: enough to notice, for free, that it changed."""
    stats = {str(p): p.stat() for p in cfg.input_paths() if p.is_file()}
    return {path: [st.st_size, st.st_mtime_ns] for path, st in stats.items()}


def warn_if_export_changed(cfg: Config, ingest: dict, step: str) -> None:
    """A step run on its own reads what the last ingest wrote: say so when the export has changed since."""
    seen = ingest.get("file_stats")
    if seen is None:  # ingested by a version that did not record them
        return
    now = file_stats(cfg)
    changed = sorted({Path(p).name for p in set(seen) | set(now) if seen.get(p) != now.get(p)})
    if changed:
        log.warning("%s: the export changed since the last ingest (%s); this step works on the data ingested then "
                    "(as of %s): run `leadscore run`, or `leadscore ingest` and `leadscore features` first",
                    step, ", ".join(changed), ingest.get("as_of"))


def ingest_step(cfg: Config, run_id: str) -> dict:
    """Export files -> canonical Parquet tables + quarantine; fails if too much was quarantined."""
    from ingest.canonical import check_usable, ingest, write_canonical, write_quarantine

    home = cfg.paths.ensure()
    quarantine_dir = home.quarantine / run_id
    with cluster.session(cfg.engine) as client:
        if client is None:
            result, tables = ingest(cfg), None
        else:
            from ingest.blocks import ingest_on_cluster

            result, tables = ingest_on_cluster(client, cfg, home.ingest_blocks)
    written = write_quarantine(result, quarantine_dir)
    summary = {
        "run_id": run_id, "as_of": result.as_of.isoformat() if result.as_of else None, "counts": result.counts,
        "files": result.files, "quarantine_reasons": result.reasons(),
        "quarantine_files": {k: str(v) for k, v in written.items()},
        "quarantined_share": round(result.quarantine_share(), 6),
        "data_fingerprint": data_fingerprint(cfg.input_paths()), "config_hash": cfg.digest(),
        "file_stats": file_stats(cfg),
    }
    try:
        check_usable(result, cfg, written, quarantine_dir)
    except DataError:
        shutil.rmtree(home.ingest_blocks, ignore_errors=True)  # the quarantine files say all a user needs
        raise
    if tables is not None:
        from ingest.blocks import commit_tables

        write_canonical(result, tables)
        commit_tables(home.ingest_blocks, home.canonical)
    else:
        write_canonical(result, home.canonical)
    write_text_atomic(home.canonical / "manifest.json", json.dumps(summary, indent=2))
    bad = sum(c["quarantined"] for c in result.counts.values())
    log.info("ingest: %s leads kept, %s rows quarantined%s", f"{result.counts['leads']['kept']:,}", f"{bad:,}",
             f" (see {quarantine_dir})" if bad else "")
    return summary


def features_step(cfg: Config, run_id: str | None = None) -> dict:
    """Canonical tables -> the fit rows: each lead at its arrival, with its label (training) or open (scoring)."""
    from features.build import build_features
    from ingest.canonical import read_canonical

    home = cfg.paths.ensure()
    ingest = read_ingest_manifest(home)
    warn_if_export_changed(cfg, ingest, "features")
    as_of = datetime.fromisoformat(ingest["as_of"])
    extra = {"as_of": as_of.isoformat(), "config_hash": cfg.digest()}
    with cluster.session(cfg.engine) as client:
        if client is None:
            tables = read_canonical(home.canonical, lazy=True)
            fs = build_features(tables, cfg, as_of, out=home.features_file, extra_metadata=extra, spill_dir=home.spill)
        else:
            from features.sharded import open_build

            fs = open_build(client, cfg, home, as_of, ingest).build("features", home.features_file, extra)
    c = fs.counts
    if fs.mode == "snapshot":
        log.info("features: snapshot export (outcome from data.leads.label): random stratified split, "
                 "no history or engagement features, and no model of a win from now on (no time)")
    log.info("features: %d features for %s leads (%s positive, %s negative, %s immature, %s open)",
             len(fs.features), f"{c['leads']:,}", f"{c['positive']:,}", f"{c['negative']:,}", f"{c['immature']:,}",
             f"{c['open']:,}")
    return {"as_of": as_of.isoformat(), "features": fs.features, "counts": fs.counts}


def _landmarks(cfg: Config, home: Home, as_of: str):
    """The landmark rows (each lead still open at an age drawn in the span ending at each of
    label.landmarks_days, for the model of a win from now on): training data only, so built by the training
    step (a scoring run never needs them)."""
    from features.build import build_landmarks
    from features.store import load_feature_set
    from ingest.canonical import read_canonical

    extra = {"as_of": as_of, "config_hash": cfg.digest()}
    with cluster.session(cfg.engine) as client:
        if client is None:
            lm = build_landmarks(read_canonical(home.canonical, lazy=True), cfg, datetime.fromisoformat(as_of),
                                 out=home.landmarks_file, extra_metadata=extra, spill_dir=home.spill)
        else:
            from features.sharded import open_build

            lm = open_build(client, cfg, home, datetime.fromisoformat(as_of), read_ingest_manifest(home)).build(
                "landmarks", home.landmarks_file, extra)
    n = lm.counts
    log.info("train: %s landmark rows in the spans of age ending at %s days, sampled from %s won within %d days "
             "after (at %.3g) and %s not (at %.3g)", f"{n['rows']:,}",
             ", ".join(str(a) for a in sorted(set(cfg.label.landmarks_days))), f"{n['positive']:,}",
             cfg.label.horizon_days, n["positive_sample_rate"], f"{n['negative']:,}", n["negative_sample_rate"])
    return load_feature_set(home.landmarks_file)[0]


def train_step(cfg: Config, run_id: str) -> dict:
    """Train the model, register it, gate it against its champion; then one model per ``[[segments]]`` that
    meets the minimums, each gated against its own champion and against the global model on its leads."""
    from features.store import load_feature_set
    from models.train import KIND_WORDS, check_fit_minimums, train_model

    home = cfg.paths.ensure()
    fs, meta = load_feature_set(home.features_file)
    home.landmarks_file.unlink(missing_ok=True)  # never train on the landmarks of another export
    try:
        check_fit_minimums(fs, cfg)  # before the landmark rows are built for nothing
    except DataError:
        from ingest.canonical import no_wins_reason

        reason = no_wins_reason(cfg, home.canonical, read_ingest_manifest(home).get("quarantine_reasons", {}))
        if reason:  # the config, not the history, is what is short
            raise ConfigError(reason) from None
        raise
    landmarks = _landmarks(cfg, home, meta["as_of"]) if fs.mode != "snapshot" else None
    in_service = _in_service(home)
    with cluster.session(cfg.engine) as client:
        result = train_model(fs, cfg, landmarks, as_of=pd.Timestamp(meta["as_of"]), client=client,
                             in_service=in_service and in_service[0])
        inputs = {"ingest": read_ingest_manifest(home), "truth": _read_truth(cfg)}  # read once for every model
        out = _register(cfg, home, run_id, result, fs, meta, inputs, home.runs / run_id, champion=in_service)
        if out["beaten_by"]:
            # No champion yet, and a baseline ranks the newest leads better beyond noise: a first run that
            # published nothing would leave a new user with nothing, so that baseline becomes the first model.
            best = max(out["beaten_by"], key=lambda b: result.baselines[b]["roc_auc"])
            log.warning("train: no champion yet, and the %s baseline ranks the test leads better than version %s "
                        "beyond noise: training the %s as the first model (chosen on the test leads, so its test "
                        "numbers read high; the next training is judged against it as usual)", best,
                        out["model_version"], KIND_WORDS[best])
            simple = cfg.model_copy(update={"train": cfg.train.model_copy(update={"candidates": (best,)})})
            result = train_model(fs, simple, landmarks, as_of=pd.Timestamp(meta["as_of"]), client=client)
            refused = out["model_version"]
            # The refused version's report stays beside the one that replaces it.
            aside = home.runs / run_id / f"version-{refused}"
            aside.mkdir(parents=True, exist_ok=True)
            for name in ("evaluation.html", "plots", "single_feature_auc.csv"):
                if (home.runs / run_id / name).exists():
                    os.replace(home.runs / run_id / name, aside / name)
            log.info("train: version %s's evaluation report is now %s", refused, aside / "evaluation.html")
            out = _register(simple, home, run_id, result, fs, meta, inputs, home.runs / run_id)
            out["instead_of"] = refused
        if cfg.segments:
            out["segments"] = _train_segments(cfg, home, run_id, fs, landmarks, meta, inputs, result, client)
    return out


def _in_service(home: Home, name: str | None = None):
    """The champion (of segment model ``name``) and its registry reference: training follows its time-group
    decisions within noise, and the gate compares against it. None if there is none, or it cannot be loaded
    (the gate says why later; training must not stop here, or a broken champion could never be replaced)."""
    from models import registry

    name = name or registry.MODEL_NAME
    if registry.champion_version(home, name) is None:
        return None
    try:
        return registry.load_model(home, name=name)
    except LeadscoreError as exc:
        log.warning("train: the champion of %s cannot be loaded (%s); time-telling groups are decided afresh", name, exc)
        return None


def _train_segments(cfg: Config, home: Home, run_id: str, fs, landmarks, meta: dict, inputs: dict, global_result,
                    client) -> dict[str, dict]:
    """A model per segment that meets train.min_leads / min_wins / min_losses; the others are scored by the
    global model, and the run says so. Each is kept only where it ranks its segment's newest leads at least as
    well as the global model does."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.compute as pc

    from features.segments import members
    from models import registry
    from models.compare import compare_with_champion
    from models.train import check_minimums, train_model

    lc = cfg.data.leads
    wanted = {"lead_id", *(lc.internal_column(c) for s in cfg.segments for c in s.where)}
    groups = members(pq.read_table(home.canonical / "leads.parquet", columns=sorted(wanted)).to_pandas(), cfg)
    out = {}
    for segment in cfg.segments:
        ids = pa.array(groups[segment.name], pa.string())

        def part(features):
            return dataclasses.replace(features, frame=features.frame.filter(
                pc.is_in(features.frame["lead_id"], value_set=ids)))

        seg_fs = part(fs)
        name = registry.segment_model_name(segment.name)
        known = seg_fs.frame.filter(pc.and_(seg_fs.frame["mature"], pc.is_valid(seg_fs.frame["label"])))
        labels = known["label"].to_numpy(zero_copy_only=False).astype(float)
        wins = int(labels.sum())
        seg_fs = dataclasses.replace(seg_fs, counts={"leads": seg_fs.frame.num_rows, "positive": wins,
                                                     "negative": len(labels) - wins})
        try:
            check_minimums(labels, cfg, what=f"segment {segment.name!r}")
            log.info("train: segment %r: %s leads, a model of its own", segment.name, f"{len(ids):,}")
            seg_champion = _in_service(home, name)
            result = train_model(seg_fs, cfg, part(landmarks) if landmarks is not None else None,
                                 as_of=pd.Timestamp(meta["as_of"]), client=client,
                                 in_service=seg_champion and seg_champion[0])
        except LeadscoreError as exc:  # this segment cannot have a model now; the others still may
            why = str(exc).split(". Add history")[0]
            retired = registry.retire_champion(home, name, why, "leadscore train")
            log.info("train: %s; its %s leads are scored by the global model%s", why, f"{len(ids):,}",
                     f" (its version {retired} is champion no more)" if retired else "")
            out[segment.name] = {"trained": False, "leads": len(ids), "reason": str(exc)}
            continue
        against = compare_with_champion(global_result.model, "(the global model of this run)", fs.frame,
                                        result.test_frame)
        if against is None:
            refusals = ["too few of its newest leads are new to the global model to compare the two"]
        else:
            result.metrics["global_roc_auc_same_leads"] = against.champion_auc
            refusals = [] if against.auc >= against.champion_auc else [
                f"the global model ranks this segment's newest leads better (ROC AUC {against.champion_auc:.3f} vs "
                f"{against.auc:.3f} on the same leads)"]
            log.info("train: segment %r: ROC AUC %.3f on its newest leads, the global model %.3f on the same leads",
                     segment.name, against.auc, against.champion_auc)
        registered = _register(cfg, home, run_id, result, seg_fs, meta, inputs,
                               home.runs / run_id / "segments" / segment.name,
                               name, refusals, champion=seg_champion)
        if refusals:  # an older version of it must not keep scoring leads the global model ranks better
            retired = registry.retire_champion(home, name, refusals[0], "leadscore train")
            if retired:
                log.info("train: segment %r: version %s is champion no more; the global model scores its leads",
                         segment.name, retired)
        out[segment.name] = {"trained": True, "leads": len(ids),
                             "global_roc_auc": against.champion_auc if against else None,
                             "roc_auc": against.auc if against else None, **registered}
    return out


def _register(cfg: Config, home: Home, run_id: str, result, fs, meta: dict, inputs: dict, run_dir: Path,
              name: str | None = None, refusals: list[str] = (), champion: tuple | None = None) -> dict:
    """Log a trained model with its evaluation in MLflow as a new version of ``name``, and promote it if it passes
    the gate (against its champion and the baselines; ``refusals``: other reasons it may not). ``champion``: the
    champion and its reference, if already loaded."""
    from models import registry
    from models.compare import compare_with_champion
    from models.evaluation import comparison_table, evaluation_report
    from models.gate import decide, recent_champion
    from models.metrics import against_truth, auc_difference_se

    name = name or registry.MODEL_NAME
    what = "" if name == registry.MODEL_NAME else f" of {name}"
    ingest, truth = inputs["ingest"], inputs["truth"]  # the ingest manifest, the synthetic truth (or None)
    if truth is not None:
        result.metrics.update(against_truth(result.test_frame, truth, cfg.evaluation.truth_id,
                                            cfg.evaluation.truth_probability))
    for baseline, metrics in result.baselines.items():
        result.metrics.update({f"baseline_{baseline}_{k}": v for k, v in metrics.items() if k != "base_rate"})
    result.split_counts.update({f"labels_{k}": v for k, v in fs.counts.items()})
    if result.now is not None:  # the model of a win from now on, on its own test rows (the newest landmarks)
        result.metrics.update({f"now_{k}": v for k, v in result.now.metrics.items()})
        result.split_counts.update({f"now_{k}": v for k, v in result.now.split_counts.items()})
        result.params.update({f"now_{k}": v for k, v in result.now.params.items()
                              if k in ("calibration", "best_iteration", "final_rounds", "bags", "n_features",
                                       "tier_cutoffs")})
    tags = {"leadscore_run_id": run_id, "git_sha": git_sha(), "config_hash": cfg.digest(),
            "data_fingerprint": ingest["data_fingerprint"], "as_of": meta["as_of"], "recipe": cfg.recipe_digest(),
            "horizon_days": str(cfg.label.horizon_days), "features": json.dumps(fs.features),
            "omp_wait_policy": wait_policy(), "engine": cfg.engine.kind,
            "label_counts": json.dumps(fs.counts), "registered_model": name}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_csv(result.single_feature, run_dir / "single_feature_auc.csv")
    page, charts = evaluation_report(result, fs, cfg.label.horizon_days, cfg.label.landmarks_days)
    (run_dir / "plots").mkdir(exist_ok=True)
    for chart, svg in charts.items():  # each chart also stands alone, as an MLflow artifact
        write_text_atomic(run_dir / "plots" / f"{chart}.svg", svg)
    write_text_atomic(run_dir / "evaluation.html", page)
    ref = registry.log_training_run(home, result, tags, run_name=f"train-{run_id}" + (what and f"-{name}"),
                                    artifacts={"leakage": run_dir / "single_feature_auc.csv",
                                               "evaluation": run_dir / "evaluation.html", "plots": run_dir / "plots"},
                                    name=name)
    registry.set_alias(home, ref.version, registry.CHALLENGER, name=name)
    compared = None
    if registry.champion_version(home, name) is not None:
        champion, champion_ref = champion or registry.load_model(home, name=name)
        compared = compare_with_champion(champion, champion_ref.version, fs.frame, result.test_frame)
    champion_auc = compared.champion_auc if compared else None
    gate_metrics = {**result.metrics, "roc_auc": compared.auc} if compared else result.metrics
    keep = None
    if compared:
        champion_tags, registered_at = registry.version_info(home, champion_ref.version, name)
        keep = recent_champion(champion_tags, registered_at, meta["as_of"], datetime.now(timezone.utc),
                               cfg.recipe_digest(), tags["git_sha"], cfg.gate.keep_champion_days)
    y_test, p_test = result.test_frame["label"].to_numpy(), result.test_frame["probability"].to_numpy()
    decision = decide(gate_metrics, champion_auc, cfg.gate.auc_tolerance, cfg.gate.max_ece,
                      {b: m["roc_auc"] for b, m in result.baselines.items()},
                      {b: auc_difference_se(y_test, p_test, result.baseline_probability[b])
                       for b in result.baselines if b in result.baseline_probability},
                      keep_champion=keep, champion_noise=compared.auc_difference_se if compared else 0.0,
                      champion_ece=(compared.ece, compared.champion_ece) if compared else None)
    kept = decision.kept and not refusals
    # A refusal decides over keeping the champion: its reason alone is given.
    reasons = list(refusals) if decision.kept and refusals else [*decision.reasons, *refusals]
    promote = decision.promote and not refusals
    verdict = ("not promoted: " + "; ".join(reasons) if kept else
               "refused: " + "; ".join(reasons) if not promote else
               "passed with warnings: " + "; ".join(decision.warnings) if decision.warnings else "passed")
    registry.tag_version(home, ref.version, {"gate": verdict}, name=name)
    top = ", ".join(f"{fs.labels.get(r.feature, r.feature)} {r.auc:.3f}" for r in result.single_feature.head(5).itertuples())
    log.info("train: strongest single features%s (ROC AUC): %s", what, top)
    m = result.metrics
    if "roc_auc_truth" in m:
        log.info("train: ROC AUC of the true probabilities on the same test leads: %.3f", m["roc_auc_truth"])
    log.info("train: model version %s%s against the baselines on the same %s test leads (%s won):\n%s", ref.version,
             what, f"{result.split_counts['test_leads']:,}", f"{result.split_counts['test_wins']:,}",
             comparison_table({"model": m, **result.baselines}))
    if result.now is not None:
        log.info("train: model of a win from now on, on its %s newest landmark rows (weighted), beside the fit on "
                 "the same rows:\n%s", f"{result.now.split_counts['test_rows']:,}",
                 comparison_table({"from now": result.now.metrics, **result.now.baselines}))
    if promote:
        against = (f"ROC AUC {compared.auc:.3f} vs the champion's {champion_auc:.3f} on the same leads" if compared
                   else "judged against the baselines")
        previous = registry.promote(home, ref.version, reason=f"passed the gate ({against})", who="leadscore train",
                                    name=name)
        log.info("train: version %s%s is champion%s", ref.version, what,
                 f" (was version {previous})" if previous else "")
        for warning in decision.warnings:
            log.warning("train: version %s%s is champion, judged against %s, but its %s (see the evaluation "
                        "report)", ref.version, what, "the champion" if compared else "the baselines alone", warning)
    elif kept:
        log.info("train: version %s%s stays challenger: %s", ref.version, what, "; ".join(reasons))
    else:
        log.warning("train: version %s%s stays challenger: %s", ref.version, what, "; ".join(reasons))
    log.info("train: evaluation report %s", run_dir / "evaluation.html")
    return {"model_version": ref.version, "mlflow_run_id": ref.run_id, "metrics": m, "split": result.split_counts,
            "evaluation": str(run_dir / "evaluation.html"), "promoted": promote, "kept": kept,
            "gate_reasons": reasons, "gate_warnings": decision.warnings, "champion_auc": champion_auc,
            "compared_auc": compared.auc if compared else None, "beaten_by": [] if refusals else decision.beaten_by}


def _read_truth(cfg: Config) -> pd.DataFrame | None:
    """The known truth of a synthetic export (evaluation.truth_path), or None."""
    ev = cfg.evaluation
    if ev.truth_path is None:
        return None
    import pyarrow.csv as pacsv

    if not ev.truth_path.is_file():
        raise DataError(f"evaluation.truth_path: file {ev.truth_path} not found")
    return pacsv.read_csv(ev.truth_path, convert_options=pacsv.ConvertOptions(
        include_columns=[ev.truth_id, ev.truth_probability], column_types={ev.truth_id: "string"})).to_pandas()


def _now_definitions(scorer) -> list[dict]:
    """The now-table the model of a win from now on was trained with (it travels inside the model)."""
    definitions = scorer.now_model.reasons.definitions
    if not definitions:
        raise DataError(f"model version {scorer.model_version} does not say how its features of a win from now on "
                        "are computed; retrain it (`leadscore train --config FILE`)")
    return definitions


# Beside each published run: every published lead's input hash and the model that scored it, which is what
# --since-last compares against. Reading it costs one run's rows, where the ledger's latest row per lead costs
# every run's (and an archived ledger day would make its leads look new).
INPUTS_FILE = "inputs.parquet"
INPUTS_COLUMNS = ("lead_id", "input_hash", "model_version", "scored_at")


def last_inputs(latest: Path | None, ledger_root: Path) -> pd.DataFrame:
    """Each lead's inputs and model as last published: from the last run's ``inputs.parquet``, or (a run
    published before that file existed, or none) from the ledger's latest row per lead."""
    from serving import ledger

    if latest is not None and (latest / INPUTS_FILE).is_file():
        return pq.read_table(latest / INPUTS_FILE).to_pandas()
    return ledger.read(ledger_root, columns=list(INPUTS_COLUMNS))


def score_step(cfg: Config, run_id: str, since_last: bool = False) -> dict:
    """Score the open leads (no win or loss yet) with the champion, route them and publish them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from features.online import OnlineFeatures, save_snapshot, snapshot_tables
    from features.store import load_feature_set
    from models.drift import drift_report
    from models.registry import segment_model_name
    from reports.accounts import account_table
    from serving import ledger
    from serving.crm_files import crm_frames
    from serving.publish import frame_writers, publish_run, reconcile_scores
    from serving.scorer import LeadScorer
    from serving.scoring import score_open_leads, scores_manifest

    home = cfg.paths.ensure()
    mended = reconcile_scores(home.scores, home.ledger)
    if any(mended.values()):
        log.warning("score: an earlier run was stopped while publishing; mended: %s",
                    ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in mended.items() if v))
    if cfg.publish.sql_url:
        from serving.sql_sink import check_connection

        check_connection(cfg.publish.sql_url)  # before anything is published
    scored_at = datetime.now(timezone.utc).replace(microsecond=0)
    ingest = read_ingest_manifest(home)
    warn_if_export_changed(cfg, ingest, "score")
    fs, meta = load_feature_set(home.features_file)
    scorer = LeadScorer.from_registry(home, segments=tuple(s.name for s in cfg.segments))
    scorer.check_schema(fs.categorical, fs.numeric)
    frame = fs.frame.to_pandas()
    as_of = datetime.fromisoformat(meta["as_of"])
    acts, changes = home.canonical / "activities.parquet", home.canonical / "outcomes.parquet"
    activities = pq.read_table(acts, columns=["lead_id", "type", "occurred_at"]) if acts.exists() else None
    now_definitions, stages = [], None
    if scorer.now_model is not None:
        now_definitions = _now_definitions(scorer)
        scorer.check_schema(fs.categorical, fs.numeric, [d["name"] for d in now_definitions])
        stages = pq.read_table(changes, columns=["lead_id", "stage", "occurred_at"]) if changes.exists() else None
    decimal = ingest["files"].get("leads", {}).get("decimal", ".")
    snapshot = snapshot_tables(frame, activities, cfg, as_of, fs.definitions, decimal, now_definitions, stages)
    leads = pq.read_table(home.canonical / "leads.parquet")
    open_ids = pa.array(frame.loc[frame["is_open"], "lead_id"].to_numpy(dtype=object), pa.string())
    open_leads = leads.filter(pc.is_in(leads["lead_id"], value_set=open_ids)).to_pandas()
    latest = read_latest(home.scores)
    seen = last_inputs(latest, home.ledger) if since_last else None
    previous = (pd.read_parquet(latest / "scores.parquet") if latest is not None
                and (latest / "scores.parquet").exists() else None)  # a file, or a folder of parts
    # On the Dask engine the workers score the leads and write the published files, the ledger and the SQL rows in
    # parts; ranks, trends and routes, which compare every lead with the others, are set here.
    parts = cfg.engine.rows_per_part
    with cluster.session(cfg.engine) as client:
        run = score_open_leads(scorer, OnlineFeatures(*snapshot), open_leads, cfg, scored_at, seen,
                               ledger.routed_on(home.ledger, scored_at.strftime("%Y-%m-%d")), previous, client)
        drift = drift_report(scorer.model, frame, as_of, fs.labels, cfg.drift.window_days, cfg.drift.psi_warn)
        manifest = scores_manifest(run, scorer, cfg, ingest, fs.counts, meta["as_of"], scored_at, since_last, drift)
        if cfg.segments:  # which model scored how many leads, and the segments' own models
            manifest["models"] = run.scores["model_version"].value_counts().sort_index().to_dict()
            manifest["segment_models"] = {
                name: {"model_name": segment_model_name(name), "model_version": seg.model_version,
                       "model_sha256": seg.model_sha256} for name, seg in scorer.segments.items()}
        published = run.scores.drop(columns=["input_hash"])
        inputs = pa.Table.from_pandas(run.scores[list(INPUTS_COLUMNS)], preserve_index=False)
        writers = {**frame_writers(published, "scores", client=client, rows_per_part=parts),
                   **frame_writers(run.queues, "routing", parquet=False),
                   "drift.json": lambda path: path.write_text(json.dumps(drift, indent=2), encoding="utf-8"),
                   INPUTS_FILE: lambda path: pq.write_table(inputs, path)}
        for name, crm in crm_frames(published, cfg).items():
            writers |= frame_writers(crm, f"crm/{name.removesuffix('.csv')}", parquet=False, client=client,
                                     rows_per_part=parts)
        accounts = None
        if cfg.data.leads.account:
            account = open_leads.set_index("lead_id")["account"].reindex(published["lead_id"].to_numpy())
            accounts = account_table(published, account)
            writers |= frame_writers(accounts, "accounts")
            manifest["accounts"] = len(accounts)
        pending = []  # the ledger holds this run's rows before LATEST names it, so no reader sees unrecorded scores
        folder = publish_run(home.scores, run_id, writers, manifest, cfg.publish.keep_runs,
                             before_latest=lambda _: pending.extend(
                                 ledger.append(home.ledger, run_id, run.scores[run.rescored], scored_at, client,
                                               parts)))
        ledger.commit(pending)
        files = sorted(writers)
        writers.clear()  # the parts the workers wrote from are released
        save_snapshot(home.snapshot, *snapshot)
        sql_rows = None
        if cfg.publish.sql_url:
            from serving.sql_sink import upsert_scores

            sql_rows = upsert_scores(cfg.publish.sql_url, cfg.publish.sql_table, published, run_id, client,
                                     parts)

    rows = manifest["rows"]
    what = "changed or new open leads" if since_last else "open leads"
    log.info("score: %s %s scored with model version %s -> %s", f"{rows['scored']:,}", what, scorer.model_version, folder)
    for name, seg in scorer.segments.items():
        n = int((run.scores["model_version"] == seg.label).sum())
        log.info("score: segment %r: %s open leads scored by its own model (version %s)", name, f"{n:,}",
                 seg.model_version)
    for name in sorted({s.name for s in cfg.segments} - set(scorer.segments)):
        log.info("score: segment %r has no model of its own (below the minimums, or not promoted): the global "
                 "model scores its leads", name)
    if since_last:
        log.info("score: %s open leads unchanged since their last score, published as they were",
                 f"{rows['unchanged_since_last']:,}")
    if scorer.now_model is not None:
        moved = run.scores["trend"].value_counts().to_dict()
        log.info("score: probability of a win in the next %d days against the last published run: %s",
                 cfg.label.horizon_days, ", ".join(f"{moved.get(k, 0):,} {k}" for k in ("rising", "steady", "falling", "new")))
    log.info("score: routing\n%s", run.queues.to_string(index=False))
    if accounts is not None and len(accounts):
        top = accounts.iloc[0]
        log.info("score: %s accounts with open leads; the likeliest to buy: %s (chance %.0f%%, %s open leads, %.2f "
                 "expected wins)", f"{len(accounts):,}", top["account"], 100 * top["chance_any_win"],
                 top["open_leads"], top["expected_wins"])
    names = [f["label"] for f in drift["features"] if f["drifted"]]
    if drift.get("score_drifted"):
        names.insert(0, f"the score (PSI {drift['score_psi']:.3f})")
    if names:
        log.warning("score: drift above drift.psi_warn = %s: %s (see %s)", cfg.drift.psi_warn, ", ".join(names[:8]),
                    folder / "drift.json")
    if sql_rows is not None:
        log.info("score: %s rows upserted into table %s", f"{sql_rows:,}", cfg.publish.sql_table)
    return {"published": str(folder), "run_id": run_id, "leads_scored": rows["scored"],
            "model_version": scorer.model_version, "rows": rows, "queues": manifest["queues"],
            "tiers": manifest["tiers"], "drift": drift, "files": files + ["manifest.json"],
            "sql_rows": sql_rows}


def report_step(cfg: Config, run_id: str) -> dict:
    """Campaign and source lead quality over every lead, published beside the scores."""
    from features.store import load_feature_set
    from ingest.canonical import read_canonical
    from reports.report import campaign_report
    from serving.publish import frame_writers, publish_run
    from serving.scorer import LeadScorer

    home = cfg.paths.ensure()
    fs, meta = load_feature_set(home.features_file)
    scorer = LeadScorer.from_registry(home)
    scorer.check_schema(fs.categorical, fs.numeric)
    frame = fs.frame.to_pandas()
    keep = [c for c in ("campaign", "source", "created_at", "mature", "label", "is_open", "won_at") if c in frame.columns]
    with cluster.session(cfg.engine) as client:
        scores = scorer.score(frame, datetime.now(timezone.utc).replace(microsecond=0), reason_tiers=(),
                              extra_columns=keep, use_now=False, client=client)  # quality is fixed at arrival
    tables = read_canonical(home.canonical, lazy=True)  # only the small campaigns table is read
    costs = tables["campaigns"].to_table().to_pandas() if "campaigns" in tables else None
    before = read_latest(home.campaign_reports)
    previous = None  # the values as they are: the CSV's text cells may start with an apostrophe (spreadsheets)
    if before is not None and (before / "campaign_quality.parquet").is_file():
        previous = pd.read_parquet(before / "campaign_quality.parquet")
    elif before is not None and (before / "campaign_quality.csv").is_file():
        previous = pd.read_csv(before / "campaign_quality.csv", dtype={"campaign": str})
    published = read_latest(home.scores)
    accounts = (pd.read_parquet(published / "accounts.parquet")
                if published is not None and (published / "accounts.parquet").is_file() else None)
    report = campaign_report(scores, costs, previous, before.name if before else None, cfg,
                             pd.Timestamp(meta["as_of"]), scorer.model_version, accounts)
    writers = {
        **frame_writers(report.campaigns, "campaign_quality"),
        **frame_writers(report.sources, "source_quality", parquet=False),
        **frame_writers(report.trend, "weekly_trend", parquet=False),
        "index.html": lambda path: path.write_text(report.page, encoding="utf-8"),
    }
    manifest = {"kind": "campaign_quality", "model_version": scorer.model_version, "as_of": meta["as_of"],
                "attribution": cfg.report.attribution, "leads": len(scores), "campaigns": len(report.campaigns),
                "sources": len(report.sources), "summary": report.summary}
    folder = publish_run(home.campaign_reports, run_id, writers, manifest, cfg.publish.keep_runs)
    log.info("report: %d campaigns, %d sources -> %s", len(report.campaigns), len(report.sources), folder / "index.html")
    for line in report.summary:
        log.info("report: %s", line)
    top = report.campaigns.head(10)[["campaign", "leads", "expected_closes", "expected_closes_low",
                                     "expected_closes_high", "actual_closes", "cost_per_expected_close", "early_read"]]
    return {"published": str(folder), "run_id": run_id, "campaigns": len(report.campaigns), "summary": report.summary,
            "top": top.astype(object).where(top.notna(), None).to_dict("records")}


def summarize_outputs(cfg: Config) -> dict[str, str]:
    """Where a user finds every output of the last run."""
    home = cfg.paths
    scores = read_latest(home.scores)
    report = read_latest(home.campaign_reports)
    return {
        "scores": str(scores / "scores.csv") if scores else "(none yet)",
        "manifest": str(scores / "manifest.json") if scores else "(none yet)",
        **({"accounts": str(scores / "accounts.csv")} if scores and (scores / "accounts.csv").is_file() else {}),
        **({"crm files": str(scores / "crm")} if scores and (scores / "crm").is_dir() else {}),
        "campaign report": str(report / "index.html") if report else "(none yet)",
        "quarantine": str(home.quarantine),
        "mlflow db": str(home.mlflow_db),
        "mlflow ui": f"{Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri {home.tracking_uri} --port 5000",
    }
