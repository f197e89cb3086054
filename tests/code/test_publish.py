"""Publishing is atomic: LATEST always names a complete run."""

import json

import pandas as pd
import pytest

from leadscore.paths import read_latest
from serving.publish import frame_writers, publish_run


def _frame(n=5):
    return pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "probability": [0.1] * n,
                         "scored_at": pd.Timestamp("2026-01-01T10:00:00.123456Z")})


def test_publish_writes_files_manifest_and_latest(tmp_path):
    folder = publish_run(tmp_path, "run1", frame_writers(_frame(), "scores"), {"model_version": "3"}, keep_runs=5)
    assert read_latest(tmp_path) == folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model_version"] == "3" and manifest["run_id"] == "run1"
    assert set(manifest["files"]) == {"scores.csv", "scores.parquet"}
    assert len(manifest["files"]["scores.csv"]["sha256"]) == 64
    csv = pd.read_csv(folder / "scores.csv")
    assert csv["scored_at"].iloc[0] == "2026-01-01T10:00:00Z"
    assert pd.read_parquet(folder / "scores.parquet").shape == (5, 3)


def test_failure_mid_publish_leaves_latest_on_the_previous_run(tmp_path):
    publish_run(tmp_path, "run1", frame_writers(_frame(), "scores"), {}, keep_runs=5)

    def broken(path):
        path.write_text("half a file")
        raise OSError("disk full")

    writers = {**frame_writers(_frame(), "scores"), "extra.csv": broken}
    with pytest.raises(OSError, match="disk full"):
        publish_run(tmp_path, "run2", writers, {}, keep_runs=5)
    assert (tmp_path / "LATEST").read_text().strip() == "run1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "run1"]


def test_old_runs_are_pruned(tmp_path):
    for i in range(5):
        publish_run(tmp_path, f"run{i}", frame_writers(_frame(), "scores", csv=False), {}, keep_runs=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run3", "run4"]
    assert (tmp_path / "LATEST").read_text().strip() == "run4"
