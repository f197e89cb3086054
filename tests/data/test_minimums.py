"""Minimums: below them no model is trained, and the user is told what the export has and what is needed."""

import pyarrow.parquet as pq
import pytest
from conftest import make_config, xeducation_config

from flows import steps
from ingest.synthetic import generate_crm, write_crm
from leadscore.errors import ConfigError, DataError
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


def test_win_values_that_match_nothing_name_the_key_and_what_the_export_holds(tmp_path):
    """A stage name or label value mistyped leaves an export with no win: the user is told which key to set and
    what the export holds, not to add history or lower the minimums."""
    write_crm(generate_crm(2_000, seed=5), tmp_path / "crm")
    cfg = make_config(tmp_path / "crm", tmp_path / "home")
    typo = cfg.model_copy(update={"label": cfg.label.model_copy(update={"won_stages": ("Won",)})})
    steps.ingest_step(typo, "r1")  # the other stages are listed, so "Closed Won" is quarantined as unknown
    steps.features_step(typo)
    with pytest.raises(ConfigError) as caught:
        steps.train_step(typo, "r1")
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert message.startswith("label.won_stages = ['Won']: no stage change kept from")
    assert "'Closed Won' (" in message and "quarantined as unknown" in message and "'Qualified' (" in message
    assert "lower" not in message and "Traceback" not in message

    # Without a list of the other stages, "Closed Won" is kept as one of them: still no win, still named.
    unlisted = typo.model_copy(update={"label": typo.label.model_copy(update={"other_stages": None})})
    steps.ingest_step(unlisted, "r2")
    steps.features_step(unlisted)
    with pytest.raises(ConfigError, match=r"label.won_stages = \['Won'\].*'Closed Won' \([\d,]+ rows\)"):
        steps.train_step(unlisted, "r2")

    # A snapshot export: a label column of 0 and 1 read with positive = ["Yes"].
    xe = xeducation_config().with_home(tmp_path / "xe")
    leads = xe.data.leads.model_copy(update={"positive": ("Yes",)})
    xe = xe.model_copy(update={"data": xe.data.model_copy(update={"leads": leads})})
    steps.ingest_step(xe, "x1")
    steps.features_step(xe)
    with pytest.raises(ConfigError, match=r"^data.leads.positive = \['Yes'\]: no value of 'Converted' is one of them.*"
                                          r"none of its 9,240 leads won"):
        steps.train_step(xe, "x1")

    # A real shortage keeps its own message.
    write_crm(generate_crm(700, seed=3), tmp_path / "small")
    small = make_config(tmp_path / "small", tmp_path / "small-home")
    steps.ingest_step(small, "s1")
    steps.features_step(small)
    with pytest.raises(DataError, match="too little data to train"):
        steps.train_step(small, "s1")
