"""Publishing is atomic: LATEST always names a complete run."""

import json

import pandas as pd
import pytest

from leadscore.paths import fresh_folder, read_latest
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


def test_a_run_written_in_parts_is_reconciled_as_one(tmp_path):
    """The Dask engine writes a run's ledger rows as several pending parts: after a kill, the parts of the run that
    became LATEST are all committed, those of a run that never did all dropped, each run named once."""
    import pyarrow as pa

    from serving import ledger

    day = tmp_path / "scored_date=2026-01-01"
    frame = _frame(4).assign(fit=0.1, score=10, tier="D", trend="new", route="nurture", reasons=None,
                             fit_reasons=None, model_version="1", input_hash=0)
    for run in ("r1", "r2"):
        table = pa.Table.from_pandas(frame.assign(run_id=run)[ledger.COLUMNS], preserve_index=False)
        for i, rows in enumerate((table.slice(0, 2), table.slice(2))):
            ledger._write_sorted(rows, day / f".{run}.part-{i:05d}.parquet{ledger.PENDING}")
    assert ledger.recorded_runs(tmp_path) == {"r1", "r2"}
    assert ledger.run_rows(tmp_path, "r1").empty  # pending: hidden
    assert ledger.reconcile(tmp_path, "r1") == (["r1"], ["r2"])
    assert sorted(p.name for p in day.iterdir()) == ["r1.part-00000.parquet", "r1.part-00001.parquet"]
    assert sorted(ledger.run_rows(tmp_path, "r1")["lead_id"]) == [f"L{i}" for i in range(4)]
    assert ledger.recorded_runs(tmp_path) == {"r1"}


def test_a_folder_written_whole_replaces_an_earlier_one(tmp_path):
    target = tmp_path / "counted"
    for run in ("first", "second"):
        with fresh_folder(target) as tmp:
            tmp.mkdir()
            (tmp / f"{run}.parquet").write_text(run)
    assert [p.name for p in target.iterdir()] == ["second.parquet"]
    with pytest.raises(RuntimeError), fresh_folder(target) as tmp:
        tmp.mkdir()
        (tmp / "half.parquet").write_text("half")
        raise RuntimeError("killed half-way")
    assert [p.name for p in tmp_path.iterdir()] == ["counted"]  # nothing left beside it
    assert [p.name for p in target.iterdir()] == ["second.parquet"]
