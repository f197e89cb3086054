"""Prefect deployments for the config's schedules: retrain, score and campaign report on cron.

Two ways to run them, both against a Prefect server (``prefect server start``):
- ``register`` puts them in a process work pool; a ``prefect worker start --pool <pool>`` executes the runs.
- ``serve`` registers them and executes the runs from this process (``flow.serve``), no worker needed.
The entrypoints are module paths (``flows.pipeline.retrain_flow``): the installed package is the code, so
nothing is copied or built.
"""

from __future__ import annotations

import os
from pathlib import Path

from leadscore.config import Config
from leadscore.errors import LeadscoreError

# (schedule key in the config, flow in flows.pipeline)
SCHEDULED = (("retrain", "retrain_flow"), ("score", "rescore_flow"), ("report", "campaign_report_flow"))


class PrefectServerError(LeadscoreError):
    pass


def deployment_name(cfg: Config) -> str:
    """One deployment per flow and config: the config file's stem (`demo`, `xeducation`)."""
    return cfg.source_file.stem if cfg.source_file else "leadscore"


def build_deployments(cfg: Config, home: Path | None = None) -> list:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.deployments.runner import EntrypointType

    from flows import pipeline

    if cfg.source_file is None:
        raise LeadscoreError("a deployment needs a config file on disk (its path is the runs' parameter)")
    params = {"config": str(cfg.source_file), "home": str(home) if home else None}
    out = []
    for key, flow_name in SCHEDULED:
        flow = getattr(pipeline, flow_name)
        out.append(flow.to_deployment(
            name=deployment_name(cfg),
            schedules=[CronSchedule(cron=getattr(cfg.schedule, key), timezone=cfg.schedule.timezone)],
            parameters=params,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["leadscore"],
            concurrency_limit=1,  # a slow run is not overtaken by the next one
            description=f"{flow.description} Schedule: schedule.{key} = {getattr(cfg.schedule, key)!r} "
                        f"({cfg.schedule.timezone}) in {cfg.source_file}.",
        ))
    return out


def check_server() -> str:
    """The Prefect API these deployments go to; a schedule needs a server that keeps running."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise PrefectServerError(
            "schedules need a running Prefect server: start one with `uv run prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (see README, 'Scheduled runs')")
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise PrefectServerError(f"the Prefect server at PREFECT_API_URL={url} does not answer ({exc}); "
                                 "is `prefect server start` running?") from None
    return url


def ensure_work_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    pool = WorkPoolCreate(name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template())
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(pool)
        except ObjectAlreadyExists:
            pass


def register(cfg: Config, home: Path | None = None) -> list[str]:
    """Create or update the three deployments in the config's work pool; returns their full names."""
    check_server()
    ensure_work_pool(cfg.schedule.work_pool)
    names = []
    for deployment in build_deployments(cfg, home):
        deployment.apply(work_pool_name=cfg.schedule.work_pool)
        names.append(deployment.full_name)
    return names


def serve(cfg: Config, home: Path | None = None) -> None:
    """Register the deployments and run their scheduled runs from this process until interrupted."""
    from prefect import serve as prefect_serve

    check_server()
    prefect_serve(*build_deployments(cfg, home), print_starting_message=False)
