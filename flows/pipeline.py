"""Prefect flows: thin tables of contents over the plain step functions in ``flows.steps``.

One flow function runs steps in order while it holds the home's lock (runs in one home take turns); each CLI
command and each schedule is a named variant of it, so a run reads as itself in Prefect's UI.
"""

from __future__ import annotations

from prefect import flow, task

from flows import steps
from flows.steps import STEPS
from leadscore import cluster
from leadscore.config import Config, load_config
from leadscore.paths import new_run_id, one_run_at_a_time
from leadscore.runtime import release_memory


@task(name="ingest")
def ingest_task(cfg: Config, run_id: str) -> dict:
    return steps.ingest_step(cfg, run_id)


@task(name="features")
def features_task(cfg: Config, run_id: str) -> dict:
    return steps.features_step(cfg, run_id)


@task(name="train")
def train_task(cfg: Config, run_id: str) -> dict:
    return steps.train_step(cfg, run_id)


@task(name="score")
def score_task(cfg: Config, run_id: str, since_last: bool = False) -> dict:
    summary = steps.score_step(cfg, run_id, since_last)
    _score_artifacts(summary)
    return summary


@task(name="report")
def report_task(cfg: Config, run_id: str) -> dict:
    summary = steps.report_step(cfg, run_id)
    _report_artifact(summary)
    return summary


TASKS = {"ingest": ingest_task, "features": features_task, "train": train_task, "score": score_task,
         "report": report_task}


@flow(name="leadscore-run")
def run_flow(cfg: Config, run_id: str, names: tuple[str, ...] = STEPS, since_last: bool = False) -> dict:
    """The named steps in order (by default the whole pipeline: ingest -> features -> train -> score -> report)."""
    out = {}
    with one_run_at_a_time(cfg.paths), cluster.session(cfg.engine):  # one Dask cluster for the whole run
        for name in names:
            out[name] = TASKS[name](cfg, run_id, since_last) if name == "score" else TASKS[name](cfg, run_id)
            release_memory()
    return out


# One variant per CLI command, named after it.
COMMANDS = {name: run_flow.with_options(name=f"leadscore-{name}") for name in STEPS}


def _scheduled(config: str, home: str | None, names: tuple[str, ...], since_last: bool = False) -> dict:
    # Deployment parameters are plain JSON, so scheduled runs take the config's path and load it here.
    return run_flow.fn(load_config(config, home), new_run_id(), names, since_last)


# Scheduled runs (deployments made by `leadscore deploy` or prefect.yaml); each ingests the export afresh.
@flow(name="leadscore-retrain")
def retrain_flow(config: str, home: str | None = None) -> dict:
    """Scheduled retraining: ingest -> features -> train; the gate decides whether the new model is champion."""
    return _scheduled(config, home, ("ingest", "features", "train"))


@flow(name="leadscore-rescore")
def rescore_flow(config: str, home: str | None = None, since_last: bool = False) -> dict:
    """Scheduled scoring: ingest -> features -> score with the current champion."""
    return _scheduled(config, home, ("ingest", "features", "score"), since_last)


@flow(name="leadscore-campaign-report")
def campaign_report_flow(config: str, home: str | None = None) -> dict:
    """Scheduled campaign report: ingest -> features -> report."""
    return _scheduled(config, home, ("ingest", "features", "report"))


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
