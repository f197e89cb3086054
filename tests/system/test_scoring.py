"""Published scores as sales ops get them: reasons, routing within capacity, ledger and history, since-last,
the SQL sink, the drift report."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import StopWorkerOnce, copy_home
from typer.testing import CliRunner

from flows import steps
from flows.cli import app
from leadscore import cluster
from leadscore.errors import DataError
from leadscore.paths import Home, read_latest
from serving import ledger
from serving.crm_files import crm_reasons
from serving.sql_sink import staging_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_home(medium_champion):
    """30,000 leads ingested, featurized and trained once; tests work on copies (see ``scored_home``)."""
    return medium_champion[0]


@pytest.fixture
def scored_home(trained_home, crm_medium, tmp_path):
    """This test's own export and home (with the champion), and its own SQL database: tests that rewrite the
    export or count published scores see nothing of each other."""
    export = tmp_path / "export"
    shutil.copytree(crm_medium, export)
    # The demo config's queues: sdr-europe 150, sdr-americas 200, sdr-global 250 a day, tiers A and B.
    cfg = copy_home(trained_home, export, tmp_path, publish=f'sql_url = "sqlite:///{tmp_path}/scores.db"')
    return cfg, export


def _published(folder):
    return pd.read_parquet(folder / "scores.parquet")


def test_scores_reasons_routing_ledger_and_sql_sink(scored_home):
    import sqlalchemy as sa

    cfg, _ = scored_home
    home = Home(cfg.home)
    first = steps.score_step(cfg, "r1")
    scores = _published(read_latest(home.scores))
    assert list(scores.columns[:12]) == ["lead_id", "probability", "fit", "score", "tier", "rank", "trend", "reasons",
                                         "fit_reasons", "route", "model_version", "scored_at"]
    assert scores["probability"].between(0, 1).all() and scores["fit"].between(0, 1).all()
    assert (scores["trend"] == "new").all()  # nothing was published before
    # Reasons for tiers A and B only, each with at least one factor.
    ab = scores["tier"].isin(["A", "B"])
    assert scores.loc[ab, "reasons"].str.startswith(("+ ", "- ")).all()
    assert scores.loc[~ab, "reasons"].isna().all()
    assert scores.loc[ab, "fit_reasons"].str.startswith(("+ ", "- ")).all()
    # Routing within capacity, and the per-queue summary is published.
    counts = scores["route"].value_counts()
    capacity = {"sdr-europe": 150, "sdr-americas": 200, "sdr-global": 250}
    assert all(counts.get(q, 0) <= c for q, c in capacity.items())
    # Every A or B lead left in nurture had no room: the queue without a filter (sdr-global) is full.
    left = ab & (scores["route"] == "nurture")
    assert not left.any() or counts.get("sdr-global", 0) == 250
    assert sum(counts.get(q, 0) for q in capacity) == ab.sum() - left.sum() <= 600
    country = pd.read_parquet(home.features_file, columns=["lead_id", "country"]).set_index("lead_id")["country"]
    europe = country.loc[scores.loc[scores["route"] == "sdr-europe", "lead_id"]]
    eu = ["United Kingdom", "Germany", "France"]
    eu_ab = country.loc[scores.loc[ab, "lead_id"]].isin(eu).sum()
    assert len(europe) == min(150, eu_ab) and europe.isin(eu).all()
    routing = pd.read_csv(read_latest(home.scores) / "routing.csv")
    assert list(routing["queue"]) == ["sdr-europe", "sdr-americas", "sdr-global", "nurture"]
    # Ledger has this run; the SQL table holds one row per lead.
    assert len(ledger.run_rows(home.ledger, "r1")) == len(scores)
    engine = sa.create_engine(cfg.publish.sql_url)
    with engine.connect() as conn:
        n, distinct = conn.execute(sa.text("SELECT COUNT(*), COUNT(DISTINCT lead_id) FROM lead_scores")).one()
    assert n == distinct == len(scores) == first["sql_rows"]

    _check_crm_files(read_latest(home.scores), scores)

    # Same input, same model: identical scores, ranks, reasons and routes.
    steps.score_step(cfg, "r2")
    again = _published(read_latest(home.scores))
    cols = ["lead_id", "probability", "score", "tier", "rank", "reasons", "route", "model_version"]
    pd.testing.assert_frame_equal(scores[cols], again[cols])
    assert (again["trend"] == "steady").all()
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
    lines = result.output.splitlines()
    assert "trend" in lines[1] and "fit" in lines[1]
    assert " new " in lines[2] and " steady " in lines[-1]
    unknown = CliRunner().invoke(app, ["history", "NO-SUCH-LEAD", "--config", str(cfg.source_file)])
    assert unknown.exit_code == 2 and "no published score" in unknown.output


def _check_crm_files(folder, scores):
    """Each CRM's write-back file, read back as its import tool would (text): one row per published lead, in
    the order published, with the values of scores.parquet in that CRM's columns."""
    read = {name: pd.read_csv(folder / "crm" / name, dtype=str, keep_default_na=False)
            for name in ("salesforce_leads.csv", "hubspot_contacts.csv", "dynamics_predictivescores.csv")}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {f"crm/{name}" for name in read} <= set(manifest["files"])
    sf, hs, dy = read.values()
    assert list(sf.columns) == ["Id", "Lead_Score__c", "Lead_Tier__c", "Lead_Probability__c", "Lead_Score_Reasons__c",
                                "Lead_Score_Model__c"]
    assert list(hs.columns) == ["Record ID", "leadscore_score", "leadscore_tier", "leadscore_probability",
                                "leadscore_reasons"]
    assert list(dy.columns) == ["msdyn_entityid", "msdyn_entitytype", "msdyn_name", "msdyn_score", "msdyn_grade",
                                "msdyn_scoretrend", "msdyn_scorereasons", "msdyn_scoredon"]
    percent = (scores["probability"] * 100).round(2).to_numpy()
    for frame, (ident, score, tier, prob) in ((sf, sf.columns[:4]), (hs, hs.columns[:4])):
        assert frame[ident].tolist() == scores["lead_id"].tolist()
        assert frame[score].astype(int).tolist() == scores["score"].tolist()
        assert frame[tier].tolist() == scores["tier"].tolist()
        assert np.allclose(frame[prob].astype(float).to_numpy(), percent, atol=1e-9)
        assert frame.iloc[:, 4].tolist() == crm_reasons(scores["reasons"]).tolist()
    ab = scores["reasons"].notna()
    assert ab.any() and sf.loc[ab, "Lead_Score_Reasons__c"].str.startswith("▲ ").any()
    assert not sf["Lead_Score_Reasons__c"].str.contains(r"^'|; [+-] ", regex=True).any()  # no apostrophe, no sign
    assert (sf["Lead_Score_Model__c"] == scores["model_version"]).all()
    assert dy["msdyn_entityid"].tolist() == scores["lead_id"].tolist() and (dy["msdyn_entitytype"] == "lead").all()
    assert dy["msdyn_grade"].tolist() == ("Grade " + scores["tier"]).tolist()
    assert (dy["msdyn_scoretrend"] == "Not enough info").all()  # first published: every trend is "new"
    assert (dy["msdyn_scoredon"] == scores["scored_at"].dt.strftime("%Y-%m-%d")).all()


def test_since_last_scores_only_new_or_changed_leads(scored_home, caplog):
    cfg, export = scored_home
    home = Home(cfg.home)
    steps.score_step(cfg, "s1")
    open_ids = pd.read_parquet(home.features_file, columns=["lead_id", "is_open"]).query("is_open")["lead_id"]
    # From here on, one machine scores the open leads in parts of engine.rows_per_part, one after the other: the
    # parts give the whole, cell for cell, and --since-last picks the leads to rescore in each part.
    whole = _published(read_latest(home.scores))
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"rows_per_part": -(-len(open_ids) // 3)})})
    steps.score_step(cfg, "s1-parts")
    same = [c for c in whole.columns if c not in ("scored_at", "trend")]
    pd.testing.assert_frame_equal(_published(read_latest(home.scores))[same], whole[same], check_exact=True)
    nothing = steps.score_step(cfg, "s2", since_last=True)
    assert nothing["leads_scored"] == 0
    assert nothing["rows"]["unchanged_since_last"] == len(open_ids)
    # First published by s1 ("new"), unchanged since: steady against that row.
    assert set(_published(read_latest(home.scores))["trend"]) == {"steady"}

    # One open lead's employee count changes in the export: only that lead is rescored.
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False)
    target = open_ids.iloc[0]
    leads.loc[leads["Lead ID"] == target, "Employees"] = "99999"
    leads.to_csv(export / "leads.csv", index=False)
    steps.ingest_step(cfg, "s3")
    steps.features_step(cfg)
    before = _published(read_latest(home.scores)).set_index("lead_id")
    changed = steps.score_step(cfg, "s3", since_last=True)
    assert changed["leads_scored"] == 1
    # Every open lead is still published: the unchanged ones as they were, the changed one rescored.
    after = _published(read_latest(home.scores)).set_index("lead_id")
    assert set(after.index) == set(open_ids) and after["rank"].sort_values().tolist() == list(range(1, len(after) + 1))
    others = after.index != target
    kept = ["probability", "fit", "score", "tier", "reasons", "model_version", "scored_at"]
    pd.testing.assert_frame_equal(after.loc[others, kept], before.loc[after.index[others], kept])
    assert after.loc[target, "scored_at"] > before.loc[target, "scored_at"]
    assert ledger.run_rows(home.ledger, "s3")["lead_id"].tolist() == [target]  # the ledger holds what was scored
    assert ledger.run_rows(home.ledger, "s2").empty
    r = changed["rows"]
    assert r["leads_in"] == r["quarantined"] + r["created_after_as_of"] + r["closed"] + r["unchanged_since_last"] + r["scored"]

    # What was last published is what --since-last compares against, not the ledger's history: with every ledger
    # day archived (moved away, as its docstring allows), the next run still rescores nobody.
    shutil.move(home.ledger, home.root / "ledger-archive")
    again = steps.score_step(cfg, "s4", since_last=True)
    assert again["leads_scored"] == 0 and again["rows"]["unchanged_since_last"] == len(open_ids)
    inputs = pd.read_parquet(read_latest(home.scores) / "inputs.parquet")
    assert set(inputs["lead_id"]) == set(open_ids) and inputs["input_hash"].notna().all()

    # A step run alone after the export changed says it works on the data ingested before (and names the file).
    caplog.clear()
    with caplog.at_level("WARNING", logger="leadscore"):
        steps.warn_if_export_changed(cfg, steps.read_ingest_manifest(home), "score")
    assert "changed since the last ingest" not in caplog.text
    stat = (export / "leads.csv").stat()
    os.utime(export / "leads.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with caplog.at_level("WARNING", logger="leadscore"):
        steps.warn_if_export_changed(cfg, steps.read_ingest_manifest(home), "score")
    assert "score: the export changed since the last ingest (leads.csv); this step works on the data" in caplog.text


def test_drift_report_is_published(scored_home):
    cfg, _ = scored_home
    folder = Path(steps.score_step(cfg, "drift")["published"])
    drift = json.loads((folder / "drift.json").read_text())
    assert drift["available"] and drift["compared_rows"] > 0 and "score_psi" in drift
    assert {f["feature"] for f in drift["features"]} >= {"employees", "country"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"scores.csv", "scores.parquet", "routing.csv", "drift.json"}
    assert all(len(v["sha256"]) == 64 for v in manifest["files"].values())


def test_an_old_silent_lead_is_not_routed_ahead_of_a_young_engaged_one(scored_home):
    """Two leads with the same attributes (those of the open lead with the best fit): one arrived 500 days before
    the export and did nothing since, the other arrived 5 days before, visited, asked for a demo and took a call.
    The young one goes to a rep queue with reasons about now; the old one goes to nurture."""
    from features.store import load_feature_set

    cfg, export = scored_home
    _, meta = load_feature_set(Home(cfg.home).features_file)
    as_of = pd.Timestamp(meta["as_of"]).tz_convert(None)
    first = steps.score_step(cfg, "before")
    best = _published(Path(first["published"])).sort_values("fit").iloc[-1]["lead_id"]
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False)
    row = leads[leads["Lead ID"] == best].iloc[0]

    def when(days):
        return (as_of - pd.Timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")

    twins = pd.DataFrame([row.to_dict() | {"Lead ID": "OLD-SILENT", "Created Date": when(500), "Lead Status": "New"},
                          row.to_dict() | {"Lead ID": "YOUNG-ENGAGED", "Created Date": when(5), "Lead Status": "New"}])
    pd.concat([leads, twins]).to_csv(export / "leads.csv", index=False)
    acts = pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False)
    engaged = pd.DataFrame({"Lead ID": "YOUNG-ENGAGED", "Activity Type": ["Web Visit", "Demo Request", "Call"],
                            "Activity Date": [when(4), when(2), when(1)]})
    pd.concat([acts, engaged]).to_csv(export / "activities.csv", index=False)

    steps.ingest_step(cfg, "twins")
    steps.features_step(cfg)
    summary = steps.score_step(cfg, "twins")
    scores = _published(read_latest(Home(cfg.home).scores)).set_index("lead_id")
    old, young = scores.loc["OLD-SILENT"], scores.loc["YOUNG-ENGAGED"]
    assert young["probability"] > 5 * old["probability"]
    assert young["rank"] < old["rank"]
    assert young["tier"] in ("A", "B") and old["route"] == "nurture"
    if young["route"] == "nurture":  # only when every queue it may go to is full (routes earlier today count)
        queue = {q["queue"]: q for q in summary["queues"]}["sdr-global"]
        assert queue["routed_earlier_today"] + queue["assigned_now"] == queue["capacity"]
    assert "+ " in young["reasons"] and " ago" in young["reasons"], young["reasons"]  # "Demo Request 2 days ago"


def test_on_a_cluster_the_workers_write_the_same_publication_ledger_and_sql_rows_in_parts(trained_home, crm_medium,
                                                                                        tmp_path, caplog):
    """Issue 16, item 5: on the Dask engine (a real 2-worker LocalCluster) the scores, the CRM files, the ledger
    and the SQL rows are written by the workers in parts of ``engine.rows_per_part`` rows. A reader sees what
    the local engine publishes: one CSV in rank order, a Parquet dataset that reads as the same table, the same
    ledger rows and the same SQL table, changed in one transaction. Even when a worker dies in each phase of the
    run: scoring, writing the published files, the ledger and the SQL rows each start again, with the parts the
    dead worker held sent again."""
    import sqlalchemy as sa

    def sql(name):
        return f'sql_url = "sqlite:///{tmp_path}/{name}.db"'

    local = copy_home(trained_home, crm_medium, tmp_path / "local", publish=sql("local"))
    dask = copy_home(trained_home, crm_medium, tmp_path / "dask", publish=sql("dask"),
                     extra='\n[engine]\nkind = "dask"\nworkers = 2\nthreads = 1\nrows_per_part = 700\n')
    assert dask.engine.rows_per_part == 700 and local.publish.crm  # the demo config writes every CRM's file
    steps.score_step(local, "r1")
    left = sa.create_engine(f"sqlite:///{tmp_path}/dask.db")  # a staging table of a run killed while loading
    with left.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {staging_name('lead_scores', 'killed')} (lead_id TEXT)"))
    left.dispose()
    with cluster.session(dask.engine) as client:  # one cluster for both runs on it
        marks = tmp_path / "stopped"
        marks.mkdir()
        # As Dask names the tasks. (The CSV parts are written as the Parquet parts are: by the same code.)
        killed = ("score_part", "write_table", "write_sorted", "load_part")
        client.register_plugin(StopWorkerOnce(killed, marks))
        with caplog.at_level("WARNING", logger="leadscore"):
            steps.score_step(dask, "r1")
        assert sorted(p.name for p in marks.iterdir()) == sorted(killed)  # a worker died in each
        # Each death cost the parts that worker held, and that work started again. (Had Dask moved the task to the
        # other worker with copies of its parts first, it would rerun it alone: so at most one message each.)
        lost = [r.getMessage() for r in caplog.records if "a Dask worker was lost" in r.getMessage()]
        assert 1 <= len(lost) <= len(killed), lost
        assert any("while scoring the open leads" in m for m in lost), lost
        client.wait_for_workers(2, timeout=60)  # the nanny has started a new worker in place of each
        here, there = read_latest(Home(local.home).scores), read_latest(Home(dask.home).scores)
        scores = _published(here)
        n = len(scores)
        parts = -(-n // 700)
        assert n > 2 * 700, n

        # The Parquet dataset: a folder of parts that reads as the local file's table, row for row.
        assert (there / "scores.parquet").is_dir()
        assert sorted(p.name for p in (there / "scores.parquet").iterdir()) == [f"part-{i:05d}.parquet"
                                                                                for i in range(parts)]
        same = [c for c in scores.columns if c != "scored_at"]
        pd.testing.assert_frame_equal(_published(there)[same], scores[same], check_exact=True)
        # One CSV per file, joined from the workers' parts in rank order, with one header; the same cells.
        for name in ("scores.csv", "crm/salesforce_leads.csv", "crm/dynamics_predictivescores.csv"):
            a = pd.read_csv(here / name, dtype=str, keep_default_na=False)
            b = pd.read_csv(there / name, dtype=str, keep_default_na=False)
            pd.testing.assert_frame_equal(b.drop(columns=["scored_at"], errors="ignore"),
                                          a.drop(columns=["scored_at"], errors="ignore"))
        assert not list(there.rglob(".*"))  # no part left over
        # The manifest lists every part with its checksum.
        manifest = json.loads((there / "manifest.json").read_text())
        listed = [f for f in manifest["files"] if f.startswith("scores.parquet/")]
        assert len(listed) == parts and "scores.csv" in manifest["files"]
        from serving.publish import sha256_file

        assert all(manifest["files"][f]["sha256"] == sha256_file(there / f) for f in listed)

        # The ledger: the same rows, in parts that each hold a run of lead ids, none pending.
        rows_here = ledger.run_rows(Home(local.home).ledger, "r1").drop(columns=["scored_at", "scored_date"])
        rows_there = ledger.run_rows(Home(dask.home).ledger, "r1").drop(columns=["scored_at", "scored_date"])
        pd.testing.assert_frame_equal(rows_there.sort_values("lead_id", ignore_index=True),
                                      rows_here.sort_values("lead_id", ignore_index=True), check_exact=True)
        files = sorted(Home(dask.home).ledger.glob("scored_date=*/*"))
        assert [f.name for f in files] == [f"r1.part-{i:05d}.parquet" for i in range(-(-len(rows_there) // 700))]
        bounds = [pd.read_parquet(f, columns=["lead_id"])["lead_id"].agg(["min", "max"]).tolist() for f in files]
        assert all(a[1] < b[0] for a, b in zip(bounds, bounds[1:]))
        assert ledger.recorded_runs(Home(dask.home).ledger) == {"r1"}
        lead = scores["lead_id"].iloc[0]
        assert len(ledger.lead_history(Home(dask.home).ledger, lead)) == 1

        # The SQL table: the same rows; the staging tables, this run's and the killed run's, are gone.
        def table(name):
            engine = sa.create_engine(f"sqlite:///{tmp_path}/{name}.db")
            with engine.connect() as conn:
                rows = pd.read_sql("SELECT * FROM lead_scores ORDER BY lead_id", conn)
            names = sa.inspect(engine).get_table_names()
            engine.dispose()
            return rows.drop(columns=["scored_at"]), names

        (a, _), (b, names) = table("local"), table("dask")
        pd.testing.assert_frame_equal(b, a)
        assert names == ["lead_scores"] and len(b) == n

        # A second run whose upsert the database refuses for one lead: nothing of it reaches the table, and the
        # staging table is dropped.
        engine = sa.create_engine(f"sqlite:///{tmp_path}/dask.db")
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TRIGGER refuse BEFORE UPDATE ON lead_scores WHEN NEW.lead_id = '{lead}' "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"))
        # The run is a --since-last one where r1's record of every third lead's inputs was changed: the workers
        # rescore exactly those (in every part) and the driver carries the others.
        inputs = there / "inputs.parquet"
        seen = pd.read_parquet(inputs)
        tampered = seen.index % 3 == 0
        seen.loc[tampered, "input_hash"] += 1
        seen.to_parquet(inputs)
        with pytest.raises(DataError, match="nothing was changed: .*refused by a trigger"):
            steps.score_step(dask, "r2", since_last=True)
        second = read_latest(Home(dask.home).scores)
        assert second.name == "r2"
        rows = json.loads((second / "manifest.json").read_text())["rows"]
        assert rows["scored"] == tampered.sum() and rows["unchanged_since_last"] == n - tampered.sum()
        rescored = ledger.run_rows(Home(dask.home).ledger, "r2")["lead_id"]
        assert set(rescored) == set(seen.loc[tampered, "lead_id"])
        pd.testing.assert_frame_equal(_published(second)[same], scores[same].assign(trend="steady"), check_exact=True)
        assert table("dask")[1] == ["lead_scores"]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT DISTINCT run_id FROM lead_scores")).scalars().all() == ["r1"]
        engine.dispose()
