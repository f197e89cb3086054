"""Published scores as sales ops get them: reasons, routing within capacity, ledger and history, since-last,
the SQL sink, the drift report."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_home, make_config
from typer.testing import CliRunner

from flows import steps
from flows.cli import app
from leadscore.paths import Home, read_latest
from serving import ledger

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_home(crm_medium, tmp_path_factory):
    """30,000 leads ingested, featurized and trained once; tests work on copies (see ``scored_home``)."""
    cfg = make_config(crm_medium, tmp_path_factory.mktemp("scoring") / "home")
    steps.ingest_step(cfg, "r0")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r0")
    assert trained["promoted"], trained["gate_reasons"]
    return cfg


@pytest.fixture
def scored_home(trained_home, crm_medium, tmp_path):
    """This test's own export and home (with the champion), and its own SQL database: tests that rewrite the
    export or count published scores see nothing of each other."""
    export = tmp_path / "export"
    shutil.copytree(crm_medium, export)
    # The demo config's queues: sdr-europe 150, sdr-americas 200, sdr-global 250 a day, tiers A and B.
    cfg = copy_home(trained_home, export, tmp_path, extra=f'\n[publish]\nsql_url = "sqlite:///{tmp_path}/scores.db"\n')
    return cfg, export


def _published(folder):
    return pd.read_parquet(folder / "scores.parquet")


def test_scores_reasons_routing_ledger_and_sql_sink(scored_home):
    import sqlalchemy as sa

    cfg, _ = scored_home
    home = Home(cfg.home)
    first = steps.score_step(cfg, "r1")
    scores = _published(read_latest(home.scores))
    assert list(scores.columns[:9]) == ["lead_id", "probability", "score", "tier", "rank", "reasons", "route",
                                        "model_version", "scored_at"]
    # Reasons for tiers A and B only, each with at least one factor.
    ab = scores["tier"].isin(["A", "B"])
    assert scores.loc[ab, "reasons"].str.startswith(("+ ", "- ")).all()
    assert scores.loc[~ab, "reasons"].isna().all()
    # Routing within capacity, and the per-queue summary is published.
    counts = scores["route"].value_counts()
    capacity = {"sdr-europe": 150, "sdr-americas": 200, "sdr-global": 250}
    assert all(counts.get(q, 0) <= c for q, c in capacity.items())
    assert sum(counts.get(q, 0) for q in capacity) == min(600, ab.sum())
    country = pd.read_parquet(home.features_file, columns=["lead_id", "country"]).set_index("lead_id")["country"]
    europe = country.loc[scores.loc[scores["route"] == "sdr-europe", "lead_id"]]
    assert len(europe) == 150 and europe.isin(["United Kingdom", "Germany", "France"]).all()
    routing = pd.read_csv(read_latest(home.scores) / "routing.csv")
    assert list(routing["queue"]) == ["sdr-europe", "sdr-americas", "sdr-global", "nurture"]
    # Ledger has this run; the SQL table holds one row per lead.
    assert len(ledger.run_rows(home.ledger, "r1")) == len(scores)
    engine = sa.create_engine(cfg.publish.sql_url)
    with engine.connect() as conn:
        n, distinct = conn.execute(sa.text("SELECT COUNT(*), COUNT(DISTINCT lead_id) FROM lead_scores")).one()
    assert n == distinct == len(scores) == first["sql_rows"]

    # Same input, same model: identical scores, ranks, reasons and routes.
    steps.score_step(cfg, "r2")
    again = _published(read_latest(home.scores))
    cols = ["lead_id", "probability", "score", "tier", "rank", "reasons", "route", "model_version"]
    pd.testing.assert_frame_equal(scores[cols], again[cols])
    with engine.connect() as conn:
        n, runs = conn.execute(sa.text("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM lead_scores")).one()
        old = conn.execute(sa.text("SELECT COUNT(*) FROM lead_scores WHERE run_id = 'r1'")).scalar()
    assert n == len(scores) and runs == 1 and old == 0  # upserted: updated in place, nothing added twice
    engine.dispose()

    # History of one lead: two entries, first with reasons when it is in tier A or B.
    lead = scores.loc[ab, "lead_id"].iloc[0]
    result = CliRunner().invoke(app, ["history", lead, "--config", str(cfg.source_file)])
    assert result.exit_code == 0, result.output
    assert f"lead {lead}: 2 published scores" in result.output and "first scored: tier" in result.output


def test_since_last_scores_only_new_or_changed_leads(scored_home):
    cfg, export = scored_home
    home = Home(cfg.home)
    steps.score_step(cfg, "s1")
    nothing = steps.score_step(cfg, "s2", since_last=True)
    assert nothing["leads_scored"] == 0
    open_ids = pd.read_parquet(home.features_file, columns=["lead_id", "is_open"]).query("is_open")["lead_id"]
    assert nothing["rows"]["unchanged_since_last"] == len(open_ids)

    # One open lead's employee count changes in the export: only that lead is rescored.
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False)
    target = open_ids.iloc[0]
    leads.loc[leads["Lead ID"] == target, "Employees"] = "99999"
    leads.to_csv(export / "leads.csv", index=False)
    steps.ingest_step(cfg, "s3")
    steps.features_step(cfg)
    changed = steps.score_step(cfg, "s3", since_last=True)
    assert changed["leads_scored"] == 1
    assert _published(read_latest(home.scores))["lead_id"].tolist() == [target]
    r = changed["rows"]
    assert r["leads_in"] == r["quarantined"] + r["created_after_as_of"] + r["closed"] + r["unchanged_since_last"] + r["scored"]


def test_drift_report_is_published(scored_home):
    cfg, _ = scored_home
    folder = Path(steps.score_step(cfg, "drift")["published"])
    drift = json.loads((folder / "drift.json").read_text())
    assert drift["available"] and drift["compared_rows"] > 0 and "score_psi" in drift
    assert {f["feature"] for f in drift["features"]} >= {"employees", "country"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"scores.csv", "scores.parquet", "routing.csv", "drift.json"}
    assert all(len(v["sha256"]) == 64 for v in manifest["files"].values())
