"""Scores sales ops act on: reasons, routing within capacity, ledger and history, since-last, SQL sink, drift."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import make_config
from leadscore import steps
from leadscore.cli import app
from leadscore.config import RoutingConfig
from leadscore.errors import DataError
from leadscore.paths import Home, read_latest
from models.explain import top_reasons
from serving import ledger
from serving.routing import route_leads
from serving.scorer import LeadScorer



# ---------------------------------------------------------------- routing (pure)

def _leads(n=500, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    tier = np.where(p > 0.9, "A", np.where(p > 0.7, "B", np.where(p > 0.4, "C", "D")))
    scores = pd.DataFrame({"lead_id": [f"L{i:04d}" for i in range(n)], "probability": p, "tier": tier})
    columns = pd.DataFrame({"Country": rng.choice(["Germany", "France", "India", "United States"], n)})
    return scores, columns


def _routing(queues):
    return RoutingConfig.model_validate({"fallback": "nurture", "queues": queues})


def test_routing_fills_queues_best_first_within_capacity():
    scores, columns = _leads()
    routing = _routing([{"name": "eu", "capacity": 20, "tiers": ["A", "B"], "where": {"Country": ["Germany", "France"]}},
                        {"name": "hot", "capacity": 30, "tiers": ["A"]}])
    route, summary = route_leads(scores, columns, routing)
    p, tier, eu_match = scores["probability"].to_numpy(), scores["tier"].to_numpy(), columns["Country"].isin(["Germany", "France"]).to_numpy()
    eu = route == "eu"
    assert eu.sum() == 20 and (eu_match[eu]).all() and np.isin(tier[eu], ["A", "B"]).all()
    # No better matching lead was left out of a full queue.
    assert p[eu].min() > p[eu_match & np.isin(tier, ["A", "B"]) & ~eu].max()
    hot = route == "hot"
    assert hot.sum() == 30 and (tier[hot] == "A").all()
    assert p[hot].min() > p[(tier == "A") & ~eu & ~hot].max()  # overflow from eu competes here too
    assert set(route) == {"eu", "hot", "nurture"}
    s = summary.set_index("queue")
    assert s.loc["eu", "leads"] == 20 and s.loc["nurture", "leads"] == len(scores) - 50
    assert s.loc["hot", "expected_closes"] == pytest.approx(p[hot].sum(), abs=0.01)
    assert s[["tier_A", "tier_B", "tier_C", "tier_D"]].to_numpy().sum() == len(scores)


def test_routing_capacity_is_per_day_and_routes_stick():
    scores, columns = _leads()
    routing = _routing([{"name": "hot", "capacity": 30, "tiers": ["A"]}])
    first, _ = route_leads(scores, columns, routing)
    earlier = pd.DataFrame({"lead_id": scores["lead_id"][first == "hot"].to_numpy()[:10], "route": "hot"})
    # Later the same day: 10 leads routed earlier keep their queue; 20 places are left for the rest.
    again, summary = route_leads(scores, columns, routing, earlier)
    assert (again == "hot").sum() == 30 and set(earlier["lead_id"]) <= set(scores["lead_id"][again == "hot"])
    assert summary.set_index("queue").loc["hot", "assigned_now"] == 20
    # Identical inputs route identically.
    assert (route_leads(scores, columns, routing)[0] == first).all()


# ---------------------------------------------------------------- a scored home (ingest, features, train once)

@pytest.fixture(scope="module")
def scored_home(crm_medium, tmp_path_factory):
    export = tmp_path_factory.mktemp("scoring_export")
    for f in crm_medium.iterdir():
        shutil.copy(f, export / f.name)
    root = tmp_path_factory.mktemp("scoring") / "home"
    sql = root.parent / "scores.db"
    # The demo config's queues: sdr-europe 150, sdr-americas 200, sdr-global 250 a day, tiers A and B.
    cfg = make_config(export, root, extra=f'\n[publish]\nsql_url = "sqlite:///{sql}"\n')
    steps.ingest_step(cfg, "r0")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r0")
    assert trained["promoted"], trained["gate_reasons"]
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


# ---------------------------------------------------------------- reasons and drift against the model

def test_contributions_add_up_and_reasons_agree_in_sign(medium_run):
    _, _, fs, trained = medium_run
    model = trained.model
    frame = fs.frame.to_pandas().head(3000)
    x = model.encoder.transform(frame)
    contrib = model.attribution.contributions(x)
    raw = model.booster.predict(x, raw_score=True)
    np.testing.assert_allclose(model.attribution.bias_ + contrib.sum(axis=1), raw, atol=1e-9)
    # Path attribution agrees in sign with LightGBM's exact TreeSHAP wherever an effect is worth a reason.
    shap = model.booster.predict(x, pred_contrib=True)[:, :-1]
    strong = np.abs(shap) > 0.05
    assert (np.sign(shap[strong]) == np.sign(contrib[strong])).mean() > 0.97

    reasons = top_reasons(contrib, frame, model.features, model.reasons)
    book = model.reasons
    for i in range(200):
        parts = [r for r in reasons[i].split("; ") if r]
        plus = [r[2:] for r in parts if r.startswith("+ ")]
        minus = [r[2:] for r in parts if r.startswith("- ")]
        assert len(plus) <= 3 and len(minus) <= 3
        order = np.argsort(-contrib[i])
        if plus:  # the strongest reason for the lead is its largest positive contribution, in words
            f = model.features[order[0]]
            assert contrib[i, order[0]] > 0
            assert plus[0] == book.texts(f, frame[f].iloc[[i]], 1)[0]
        if minus:
            f = model.features[order[-1]]
            assert contrib[i, order[-1]] < 0
            assert minus[0] == book.texts(f, frame[f].iloc[[i]], -1)[0]


def test_drift_fires_on_a_shifted_input_and_not_on_the_reference(medium_run):
    _, _, fs, trained = medium_run
    scorer = LeadScorer(trained.model, "1")
    frame = fs.frame.to_pandas()
    recent = frame[frame["mature"]].sort_values("created_at").tail(8000)
    steady = scorer.drift(recent, scorer.model.probability(recent))
    assert max(steady[f] for f in ("employees", "country", "act_any_30d")) < 0.1
    shifted = recent.assign(employees=recent["employees"] * 20, country="India")
    psi = scorer.drift(shifted, scorer.model.probability(shifted))
    assert psi["employees"] > 0.2 and psi["country"] > 0.2
    assert psi["score"] > steady["score"]


def test_schema_drift_stops_scoring_with_exit_code_2(medium_run):
    _, _, fs, trained = medium_run
    scorer = LeadScorer(trained.model, "1")
    with pytest.raises(DataError, match="schema drift.*employees") as err:
        scorer.check_schema(fs.categorical, [c for c in fs.numeric if c != "employees"])
    assert err.value.exit_code == 2
    with pytest.raises(DataError, match="changed type"):
        scorer.check_schema([*fs.categorical, "employees"], [c for c in fs.numeric if c != "employees"])


def test_drift_report_is_published(scored_home):
    cfg, _ = scored_home
    folder = read_latest(Home(cfg.home).scores)
    drift = json.loads((folder / "drift.json").read_text())
    assert drift["available"] and drift["compared_rows"] > 0 and "score_psi" in drift
    assert {f["feature"] for f in drift["features"]} >= {"employees", "country"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"scores.csv", "scores.parquet", "routing.csv", "drift.json"}
    assert all(len(v["sha256"]) == 64 for v in manifest["files"].values())
