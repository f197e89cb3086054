"""The whole pipeline as a user runs it: `leadscore run`, in a real process with Prefect's own local server, on
the Dask engine (a real 2-worker LocalCluster the run starts and stops), checked against the local engine. The
local engine runs every step in process in the other tests, and in real processes `leadscore score` (test_crashes)
and the scheduled retrain flow (test_schedule)."""

import json
import os
import subprocess
from datetime import datetime

import pandas as pd
import pytest
from conftest import LEADSCORE, make_config

from features.build import build_features, build_landmarks
from flows import steps
from ingest.canonical import ingest, read_canonical
from leadscore.config import EngineConfig
from leadscore.paths import Home, read_latest, table_parts
from models import registry

pytestmark = pytest.mark.slow

LEADS = 5_000  # crm_small: the whole run in a real process, kept small so the suite stays quick
# Three partitions over two workers: uneven, so a lead's history must come from the other partitions' counts.
# (Training stays on the driver at this size; tests/system/test_dask_engine.py trains across a cluster.)
DASK = '\n[engine]\nkind = "dask"\nworkers = 2\nthreads = 1\npartitions = 3\n'
COLUMNS = ["lead_id", "probability", "fit", "score", "tier", "rank", "trend", "reasons", "fit_reasons", "route",
           "model_version", "scored_at"]


def _cli(*args, env):
    return subprocess.run([LEADSCORE, *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_run_publishes_scores_registers_a_champion_and_writes_the_report(crm_small, tmp_path):
    home_dir = tmp_path / "home"
    cfg = make_config(crm_small, home_dir, DASK)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    done = _cli("run", "--config", str(cfg.source_file), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # The run used the temporary server leadscore starts (which dies with it), not one Prefect started itself.
    assert "starting a temporary Prefect server" in done.stderr and "Stopping temporary server" not in done.stderr
    assert "scores" in done.stdout and "mlflow ui" in done.stdout
    assert "engine: Dask at tcp://" in done.stderr and "2 workers" in done.stderr and "dashboard http" in done.stderr
    assert done.stderr.count("engine: Dask at") == 1  # one cluster for the whole run
    assert "[LightGBM]" not in done.stdout + done.stderr

    home = Home(home_dir)
    latest = read_latest(home.scores)
    assert latest is not None and latest.is_dir() and not latest.name.startswith(".")
    scores = pd.read_csv(latest / "scores.csv")
    assert list(scores.columns[: len(COLUMNS)]) == COLUMNS
    assert "Owner" in scores.columns and "campaign" in scores.columns
    assert scores["lead_id"].is_unique
    assert scores["score"].between(1, 99).all() and set(scores["tier"]) <= {"A", "B", "C", "D"}
    assert sorted(scores["rank"]) == list(range(1, len(scores) + 1))
    assert pd.read_parquet(latest / "scores.parquet").shape[0] == len(scores)

    # One row per open lead: no win or loss by as_of.
    features = pd.read_parquet(home.features_file)
    assert set(scores["lead_id"]) == set(features.loc[features["is_open"], "lead_id"])

    manifest = json.loads((latest / "manifest.json").read_text())
    rows = manifest["rows"]
    assert rows["scored"] == len(scores) and rows["leads_in"] == LEADS and rows["quarantined"] == 0
    # Every lead of the export is accounted for: scored, or quarantined, or why it was not scored.
    assert rows["leads_in"] == (rows["quarantined"] + rows["created_after_as_of"] + rows["closed"]
                                + rows["unchanged_since_last"] + rows["scored"])
    assert set(manifest["files"]) == {"scores.csv", "scores.parquet", "routing.csv", "drift.json", "inputs.parquet",
                                      "accounts.csv",
                                      "accounts.parquet", "crm/salesforce_leads.csv", "crm/hubspot_contacts.csv",
                                      "crm/dynamics_predictivescores.csv"}
    assert manifest["input_rows"]["leads"] == {"rows_in": LEADS, "kept": LEADS, "quarantined": 0}
    assert manifest["config_hash"] == cfg.digest()
    assert str(manifest["model_version"]) == str(scores["model_version"].iloc[0])

    summary = registry.model_summary(home)
    assert summary["version"] == str(manifest["model_version"])
    assert summary["metrics"]["roc_auc"] > 0.6

    report = read_latest(home.campaign_reports)
    assert (report / "index.html").is_file()
    quality = pd.read_csv(report / "campaign_quality.csv")
    assert quality["leads"].sum() == LEADS

    # The run left its Prefect artifacts (routing table, links to the files, drift, campaign summary) in the
    # database of the Prefect server it used.
    import sqlite3

    with sqlite3.connect(home.prefect / "prefect.db") as db:
        artifacts = dict(db.execute("SELECT key, data FROM artifact").fetchall())
    assert {"leadscore-routing", "leadscore-scores", "leadscore-drift", "leadscore-campaign-quality"} <= set(artifacts)
    assert "sdr-europe" in artifacts["leadscore-routing"] and "scores.csv" in artifacts["leadscore-scores"]

    # The Dask engine's features and landmark rows are exactly the one-machine ingest and build's, row for row.
    # The cluster ingest wrote the canonical tables in the engine's 3 lead partitions, which the features used
    # as they were (no split of their own).
    assert len(table_parts(home.canonical / "leads.parquet")) == 3
    assert not (home.partitions / "tables").exists() and (home.partitions / "stamp.json").is_file()
    local = cfg.model_copy(update={"engine": EngineConfig()})
    as_of = datetime.fromisoformat(steps.read_ingest_manifest(home)["as_of"])
    here = ingest(local)
    assert here.as_of.isoformat() == as_of.isoformat()
    tables = here.tables
    pd.testing.assert_frame_equal(features, build_features(tables, local, as_of).frame.to_pandas(), check_exact=True)
    # The one-machine build reads the partitioned tables as they are.
    pd.testing.assert_frame_equal(features, build_features(read_canonical(home.canonical, lazy=True), local, as_of)
                                  .frame.to_pandas(), check_exact=True)
    sharded_lm = pd.read_parquet(home.landmarks_file)
    assert len(sharded_lm) > 1000
    pd.testing.assert_frame_equal(sharded_lm, build_landmarks(tables, local, as_of).frame.to_pandas(), check_exact=True)

    # Scoring again, on the local engine, publishes a new run and moves LATEST; the earlier run stays, and the
    # same model gives the same rows as it did on the cluster. (In process: `leadscore score` in a real process
    # has its own tests, kill -9 among them.)
    steps.score_step(local, "again")
    assert read_latest(home.scores) != latest and latest.is_dir()
    again = pd.read_parquet(read_latest(home.scores) / "scores.parquet")
    same = ["lead_id", "probability", "fit", "score", "tier", "rank", "reasons", "fit_reasons"]
    pd.testing.assert_frame_equal(pd.read_parquet(latest / "scores.parquet")[same], again[same], check_exact=True)
