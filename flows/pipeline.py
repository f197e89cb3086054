"""Prefect flows: thin tables of contents over the plain step functions in ``leadscore.steps``."""

from __future__ import annotations

from prefect import flow, task

from leadscore import steps
from leadscore.config import Config
from leadscore.paths import Home, new_run_id, one_run_at_a_time


@task(name="ingest")
def ingest_task(cfg: Config, run_id: str) -> dict:
    return steps.ingest_step(cfg, run_id)


@task(name="features")
def features_task(cfg: Config) -> dict:
    return steps.features_step(cfg)


@task(name="train")
def train_task(cfg: Config, run_id: str) -> dict:
    return steps.train_step(cfg, run_id)


@task(name="score")
def score_task(cfg: Config, run_id: str, since_last: bool = False) -> dict:
    summary = steps.score_step(cfg, run_id, since_last)
    _score_artifacts(summary)
    return summary


def _score_artifacts(summary: dict) -> None:
    """Prefect artifacts of a scoring run: tier counts per queue, drift, and where the files are."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(key="leadscore-routing", table=summary["queues"],
                          description=f"Leads per queue and tier, run {summary['run_id']}")
    folder = summary["published"]
    links = "\n".join(f"- [{name}](file://{folder}/{name})" for name in summary["files"])
    r = summary["rows"]
    create_markdown_artifact(key="leadscore-scores", description="Published scores", markdown=(
        f"### Scores {summary['run_id']}\n\nModel version {summary['model_version']}; {r['scored']:,} leads scored "
        f"({r['leads_in']:,} in the export, {r['quarantined']:,} quarantined, {r['closed']:,} closed, "
        f"{r['unchanged_since_last']:,} unchanged since last).\n\n{links}\n"))
    drift = summary["drift"]
    if drift["available"]:
        create_table_artifact(key="leadscore-drift", table=[{"feature": "score", "psi": drift["score_psi"]}] + [
            {"feature": f["label"], "psi": f["psi"]} for f in drift["features"]],
            description=f"Population stability index vs the model's reference (warn above {drift['psi_warn']})")


@task(name="report")
def report_task(cfg: Config, run_id: str) -> dict:
    summary = steps.report_step(cfg, run_id)
    _report_artifact(summary)
    return summary


def _report_artifact(summary: dict) -> None:
    """The report's summary and its top campaigns as a Prefect markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    def cell(v):
        return "–" if v is None else (f"{v:,.1f}" if isinstance(v, float) else str(v))

    cols = list(summary["top"][0]) if summary["top"] else []
    table = "\n".join(["| " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|" + "---|" * len(cols)]
                      + ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in summary["top"]])
    lines = "\n".join(f"- {line}" for line in summary["summary"])
    create_markdown_artifact(key="leadscore-campaign-quality", description="Campaign lead quality", markdown=(
        f"### Campaign lead quality {summary['run_id']}\n\n{lines}\n\n{table}\n\n"
        f"Report: file://{summary['published']}/index.html\n"))


@flow(name="leadscore-ingest")
def ingest_flow(cfg: Config, run_id: str) -> dict:
    with one_run_at_a_time(Home(cfg.home)):
        return ingest_task(cfg, run_id)


@flow(name="leadscore-features")
def features_flow(cfg: Config) -> dict:
    with one_run_at_a_time(Home(cfg.home)):
        return features_task(cfg)


@flow(name="leadscore-train")
def train_flow(cfg: Config, run_id: str) -> dict:
    with one_run_at_a_time(Home(cfg.home)):
        return train_task(cfg, run_id)


@flow(name="leadscore-score")
def score_flow(cfg: Config, run_id: str, since_last: bool = False) -> dict:
    with one_run_at_a_time(Home(cfg.home)):
        return score_task(cfg, run_id, since_last)


@flow(name="leadscore-report")
def report_flow(cfg: Config, run_id: str) -> dict:
    with one_run_at_a_time(Home(cfg.home)):
        return report_task(cfg, run_id)


@flow(name="leadscore-run")
def run_flow(cfg: Config, run_id: str) -> dict:
    """The whole pipeline: ingest -> features -> train -> score -> report."""
    with one_run_at_a_time(Home(cfg.home)):
        return {
            "ingest": ingest_task(cfg, run_id),
            "features": features_task(cfg),
            "train": train_task(cfg, run_id),
            "score": score_task(cfg, run_id),
            "report": report_task(cfg, run_id),
        }


# Scheduled runs (deployments made by `leadscore deploy` or prefect.yaml). Parameters must be plain JSON, so
# these take the config's path; each run ingests the export afresh before its own step.


def _config_for_run(config: str, home: str | None):
    from pathlib import Path

    from leadscore.config import load_config

    cfg = load_config(config)
    return cfg.with_home(Path(home).resolve()) if home else cfg


@flow(name="leadscore-retrain")
def retrain_flow(config: str, home: str | None = None) -> dict:
    """Scheduled retraining: ingest -> features -> train; the gate decides whether the new model is champion."""
    cfg, run_id = _config_for_run(config, home), new_run_id()
    with one_run_at_a_time(Home(cfg.home)):
        return {"ingest": ingest_task(cfg, run_id), "features": features_task(cfg), "train": train_task(cfg, run_id)}


@flow(name="leadscore-rescore")
def rescore_flow(config: str, home: str | None = None, since_last: bool = False) -> dict:
    """Scheduled scoring: ingest -> features -> score with the current champion."""
    cfg, run_id = _config_for_run(config, home), new_run_id()
    with one_run_at_a_time(Home(cfg.home)):
        return {"ingest": ingest_task(cfg, run_id), "features": features_task(cfg),
                "score": score_task(cfg, run_id, since_last)}


@flow(name="leadscore-campaign-report")
def campaign_report_flow(config: str, home: str | None = None) -> dict:
    """Scheduled campaign report: ingest -> features -> report."""
    cfg, run_id = _config_for_run(config, home), new_run_id()
    with one_run_at_a_time(Home(cfg.home)):
        return {"ingest": ingest_task(cfg, run_id), "features": features_task(cfg), "report": report_task(cfg, run_id)}
