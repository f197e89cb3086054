"""Scheduled runs execute on a real local Prefect server: `leadscore deploy`, then a process worker runs them."""

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from conftest import make_config

from leadscore.paths import Home
from models import registry

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(method: str, url: str, **kwargs) -> httpx.Response:
    """One call to the Prefect API, retried while the server answers 503 or 429, as Prefect's own client does:
    its sqlite database is briefly locked while a flow run starts and writes."""
    for _ in range(20):
        response = httpx.request(method, url, timeout=10, **kwargs)
        if response.status_code not in (429, 503):
            return response.raise_for_status()
        time.sleep(0.5)
    return response.raise_for_status()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    state = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(state), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = (state / "server.log").open("w")
    server = subprocess.Popen([BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"

    def healthy():
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return server.poll() is not None  # stop waiting if it died; checked below

    try:
        _wait(healthy, 90, "the Prefect server to start")
        assert server.poll() is None, (state / "server.log").read_text()[-2000:]
        yield url, state
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_prefect_yaml_matches_the_config_defaults():
    import yaml

    from leadscore.config import ScheduleConfig

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    crons = {d["name"]: d["schedules"][0]["cron"] for d in doc["deployments"]}
    defaults = ScheduleConfig()
    assert crons == {"retrain": defaults.retrain, "score": defaults.score, "report": defaults.report}
    import importlib

    from flows import pipeline
    from flows.deployments import SCHEDULED

    # Each entrypoint is the very flow `leadscore deploy` schedules under that name.
    for d in doc["deployments"]:
        module, _, name = d["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        assert flow is getattr(pipeline, dict(SCHEDULED)[d["name"]]), d["name"]
        assert d["parameters"]["config"] == ".leadscore/demo.toml"


def test_a_scheduled_retrain_runs_on_a_real_prefect_server(prefect_server, crm_small, tmp_path):
    url, state = prefect_server
    pool = "leadscore-test"
    cfg = make_config(crm_small, tmp_path / "home", extra=f"""
[schedule]
retrain = "* * * * *"
score = "0 0 1 1 *"
report = "0 0 1 1 *"
work_pool = "{pool}"
""")
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(state)}
    deployed = subprocess.run([BIN / "leadscore", "deploy", "--config", str(cfg.source_file)], env=env,
                              capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    assert f"leadscore-retrain/{cfg.source_file.stem}" in deployed.stdout and "worker start" in deployed.stdout

    deployment = _api("GET", f"{url}/deployments/name/leadscore-retrain/{cfg.source_file.stem}").json()
    assert deployment["schedules"][0]["schedule"]["cron"] == "* * * * *"
    assert deployment["parameters"]["config"] == str(cfg.source_file)

    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([BIN / "prefect", "worker", "start", "--pool", pool, "--limit", "1"],
                              env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2"}, stdout=worker_log,
                              stderr=subprocess.STDOUT)

    def runs_in(*states):
        body = {"deployments": {"id": {"any_": [deployment["id"]]}},
                "flow_runs": {"state": {"type": {"any_": list(states)}}}}
        return _api("POST", f"{url}/flow_runs/filter", json=body).json()

    try:
        # Prefect's scheduler plans the cron's runs (one a minute) within seconds. The first is brought forward
        # to now rather than waited for (up to a minute): it is still the run the schedule made. Once it has
        # started, the schedule is paused and the runs it planned are dropped, so the worker is idle when it is
        # stopped (else the next minute's run may start just before, and a second retrain share the home).
        planned = _wait(lambda: runs_in("SCHEDULED"), 90, "the scheduler to plan the cron's runs")
        first = min(planned, key=lambda r: r["expected_start_time"])
        assert first["auto_scheduled"] and first["deployment_id"] == deployment["id"]
        now = datetime.now(timezone.utc).isoformat()
        _api("POST", f"{url}/flow_runs/{first['id']}/set_state", json={
            "state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": now}},
            "force": True})
        _wait(lambda: runs_in("RUNNING", "COMPLETED", "FAILED", "CRASHED"), 180, "the scheduled retrain to start")
        _api("PATCH", f"{url}/deployments/{deployment['id']}", json={"paused": True})
        for planned in runs_in("SCHEDULED", "PENDING"):
            httpx.delete(f"{url}/flow_runs/{planned['id']}", timeout=10)  # gone already is fine
        run = _wait(lambda: (runs_in("COMPLETED", "FAILED", "CRASHED") or [None])[0], 180,
                    "the scheduled retrain to finish")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:  # Prefect's worker, not leadscore: stopping it is not what is tested
            worker.kill()
            worker.wait()
    assert run["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
    home = Home(cfg.home)
    manifest = json.loads((home.canonical / "manifest.json").read_text())
    assert manifest["counts"]["leads"]["kept"] > 4_000
    versions = registry.list_versions(home)
    assert len(versions) == 1 and versions[0]["aliases"] == ["champion"]  # the first model, promoted
