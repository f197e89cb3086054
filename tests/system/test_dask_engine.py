"""Training and scoring on a Dask cluster (``[engine] kind = "dask"``), on a real 2-worker LocalCluster, against
the same work on one machine. The whole pipeline on the Dask engine is in test_end_to_end."""

import numpy as np
import pytest
from conftest import StopWorkerOnce

from leadscore import cluster
from leadscore.config import EngineConfig
from leadscore.errors import ClusterError
from models.train import train_model
from serving.scorer import LeadScorer

pytestmark = pytest.mark.slow


def test_a_booster_trained_across_the_cluster_matches_one_trained_here(medium_run, caplog, tmp_path):
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
        # A worker lost while the cluster trains: the workers' LightGBM network cannot start again without it (the
        # one left may wait for it), so training ends with one line, not a traceback or a hang.
        (tmp_path / "stopped").mkdir()
        client.register_plugin(StopWorkerOnce(("train_part",), tmp_path / "stopped"))
        with pytest.raises(ClusterError, match=r"lost while training across the cluster \(lightgbm.dask\), which "
                                               "cannot start again on the workers left: run the step again"):
            train_model(fs, cfg.model_copy(update={"engine": engine}), client=client)
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
