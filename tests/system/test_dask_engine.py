"""The pipeline on a Dask cluster (``[engine] kind = "dask"``): a real 2-worker LocalCluster that the run starts
and stops, with the same features and scores as the local engine on the same export."""

import os
import subprocess
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from conftest import LEADSCORE, make_config

from features.build import build_features, build_landmarks
from flows import steps
from ingest.canonical import read_canonical
from leadscore import cluster
from leadscore.config import EngineConfig
from leadscore.paths import Home, read_latest
from models.train import train_model
from serving.scorer import LeadScorer

pytestmark = pytest.mark.slow

# Three partitions over two workers: uneven, so a lead's history must come from the other partitions' counts.
# (Training stays on the driver at this size; the second test trains across the cluster.)
DASK = '\n[engine]\nkind = "dask"\nworkers = 2\nthreads = 1\npartitions = 3\n'


def test_a_run_on_a_local_dask_cluster_equals_the_local_engine(crm_small, tmp_path):
    cfg = make_config(crm_small, tmp_path / "home", DASK)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    done = subprocess.run([LEADSCORE, "run", "--config", str(cfg.source_file)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "engine: Dask at tcp://" in done.stderr and "2 workers" in done.stderr and "dashboard http" in done.stderr
    assert done.stderr.count("engine: Dask at") == 1  # one cluster for the whole run
    assert "[LightGBM]" not in done.stdout + done.stderr

    home = Home(cfg.home)
    local = cfg.model_copy(update={"engine": EngineConfig()})
    as_of = datetime.fromisoformat(steps.read_ingest_manifest(home)["as_of"])
    tables = read_canonical(home.canonical)
    # Features and landmark rows: exactly the one-machine build's, row for row.
    fs = build_features(tables, local, as_of)
    pd.testing.assert_frame_equal(pd.read_parquet(home.features_file), fs.frame.to_pandas(), check_exact=True)
    lm = build_landmarks(tables, local, as_of)
    sharded_lm = pd.read_parquet(home.landmarks_file)
    assert len(sharded_lm) > 1000
    pd.testing.assert_frame_equal(sharded_lm, lm.frame.to_pandas(), check_exact=True)

    # The published scores: the same model scoring the same leads on one machine gives the same rows.
    published = pd.read_parquet(read_latest(home.scores) / "scores.parquet")
    steps.score_step(local, "local-check")
    again = pd.read_parquet(read_latest(home.scores) / "scores.parquet")
    assert read_latest(home.scores).name == "local-check"
    columns = ["lead_id", "probability", "fit", "score", "tier", "rank", "reasons", "fit_reasons"]
    pd.testing.assert_frame_equal(published[columns], again[columns], check_exact=True)


def test_a_booster_trained_across_the_cluster_matches_one_trained_here(medium_run, caplog):
    """lightgbm.dask on 2 workers, each holding half the rows, against the one-machine booster on the same test
    leads (the first guess of the rounds made on the driver, on 95 % of the training rows); then that model
    scoring partition by partition on the cluster against the scorer alone, unrounded."""
    cfg, _, fs, _ = medium_run
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"candidates": ("lightgbm",)})})
    here = train_model(fs, cfg)
    rows = int(0.95 * here.split_counts["train_leads"])
    engine = EngineConfig(kind="dask", workers=2, threads=1, train_on_cluster_rows=rows)
    frame = fs.frame.to_pandas()
    with cluster.session(engine) as client, caplog.at_level("INFO", logger="leadscore"):
        there = train_model(fs, cfg.model_copy(update={"engine": engine}), client=client)
        scorer = LeadScorer(there.model, "1")
        on_cluster = scorer.predict_on(client, frame, use_now=False, rows_per_partition=7000)
    alone = scorer.predict(frame, use_now=False)
    assert np.abs(on_cluster["probability"] - alone["probability"]).max() <= 1e-9
    assert (on_cluster["tier"] == alone["tier"]).all()
    assert list(on_cluster["reasons"]) == list(alone["reasons"])
    assert caplog.text.count("across 2 Dask workers (lightgbm.dask)") == 2  # the evaluated and registered boosters
    assert there.params["model_kind"] == here.params["model_kind"] == "lightgbm"
    assert (there.test_frame["lead_id"].to_numpy() == here.test_frame["lead_id"].to_numpy()).all()
    assert there.metrics["roc_auc"] > 0.7
    # Two boosters of equal quality differ on the same ~3,100 test leads by about the standard error of their
    # ROC AUC (0.012 here). Issue 16's 0.005 holds at 200,000 leads (0.7841 against 0.7875, see the README).
    assert abs(there.metrics["roc_auc"] - here.metrics["roc_auc"]) <= 0.015
    p_here, p_there = here.test_frame["probability"].to_numpy(), there.test_frame["probability"].to_numpy()
    assert np.corrcoef(p_here, p_there)[0, 1] > 0.85  # measured 0.93: the same model up to its trees
    assert there.model.booster is not None and there.model.booster.current_iteration() > 10
