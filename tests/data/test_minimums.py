"""Minimums: below them no model is trained, and the user is told what the export has and what is needed."""

import pyarrow.parquet as pq
import pytest
from conftest import make_config

from flows import steps
from ingest.synthetic import generate_crm, write_crm
from leadscore.errors import DataError
from leadscore.paths import Home


def test_a_small_export_stops_with_exit_2_saying_what_it_has_and_needs(tmp_path):
    write_crm(generate_crm(700, seed=3), tmp_path / "crm")
    cfg = make_config(tmp_path / "crm", tmp_path / "home")
    steps.ingest_step(cfg, "r1")
    steps.features_step(cfg)
    frame = pq.read_table(Home(cfg.home).features_file, columns=["mature", "label"]).to_pandas()
    known = frame[frame["mature"] & frame["label"].notna()]
    with pytest.raises(DataError) as caught:
        steps.train_step(cfg, "r1")
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"has {len(known):,} leads with a known outcome" in message
    assert f"{int(known['label'].sum()):,} of them won" in message
    # The features step counted wins of leads younger than the horizon too; the message says where they went.
    young_wins = int((~frame["mature"] & (frame["label"] == 1)).sum())
    assert young_wins > 0 and f"{young_wins:,} more wins are of younger leads" in message
    assert "1,000 leads with a known outcome (train.min_leads)" in message and "train.min_wins" in message
    assert "Traceback" not in message
    assert not Home(cfg.home).landmarks_file.exists()  # stopped before building the landmark rows

    # The minimums are the user's to lower; the message then names only what is still short.
    lower = cfg.model_copy(update={"train": cfg.train.model_copy(update={"min_leads": 100, "min_wins": 5000})})
    with pytest.raises(DataError, match=r"at least 5,000 wins \(train.min_wins\)\. Add history") as caught:
        steps.train_step(lower, "r2")
    assert "min_leads" not in str(caught.value)
