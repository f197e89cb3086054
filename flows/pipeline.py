"""Prefect flows: thin tables of contents over the plain step functions in ``leadscore.steps``."""

from __future__ import annotations

from prefect import flow, task

from leadscore import steps
from leadscore.config import Config


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
def score_task(cfg: Config, run_id: str) -> dict:
    return steps.score_step(cfg, run_id)


@task(name="report")
def report_task(cfg: Config, run_id: str) -> dict:
    return steps.report_step(cfg, run_id)


@flow(name="leadscore-ingest")
def ingest_flow(cfg: Config, run_id: str) -> dict:
    return ingest_task(cfg, run_id)


@flow(name="leadscore-features")
def features_flow(cfg: Config) -> dict:
    return features_task(cfg)


@flow(name="leadscore-train")
def train_flow(cfg: Config, run_id: str) -> dict:
    return train_task(cfg, run_id)


@flow(name="leadscore-score")
def score_flow(cfg: Config, run_id: str) -> dict:
    return score_task(cfg, run_id)


@flow(name="leadscore-report")
def report_flow(cfg: Config, run_id: str) -> dict:
    return report_task(cfg, run_id)


@flow(name="leadscore-run")
def run_flow(cfg: Config, run_id: str) -> dict:
    """The whole pipeline: ingest -> features -> train -> score -> report."""
    return {
        "ingest": ingest_task(cfg, run_id),
        "features": features_task(cfg),
        "train": train_task(cfg, run_id),
        "score": score_task(cfg, run_id),
        "report": report_task(cfg, run_id),
    }
