"""On 200,000 generator leads (drifting base rate, campaigns of very different quality, some new), one run of the
pipeline is measured against the generator's truth and its simulated future: issue 14's acceptance for the
published ``probability`` (a win in the next horizon days after the export) and issue 15's for the campaign
report's expected closes."""

import html
import json

import numpy as np
import pandas as pd
import pytest
from conftest import large_export
from sklearn.metrics import roc_auc_score

from flows import steps
from ingest.synthetic import future_win_probability
from leadscore.paths import Home, read_latest
from models.metrics import expected_calibration_error

pytestmark = pytest.mark.slow

QUEUE_CAPACITY = 600  # the demo's three rep queues: 150 + 200 + 250 leads


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One run: ingest, features, training, scores and the campaign report."""
    cfg, truth = large_export(200_000, 5, tmp_path_factory.mktemp("from_now"))
    # 250,000 of the 936,000 landmark rows (every win kept, the rest sampled and weighted): the suite's time
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_landmark_rows": 250_000})})
    steps.ingest_step(cfg, "r1")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r1")
    assert trained["promoted"], trained["gate_reasons"]
    steps.score_step(cfg, "r1")
    steps.report_step(cfg, "r1")
    return cfg, truth


def test_probability_from_now_beats_fit_and_the_truths_fit_and_age(published):
    """The reference is the best a model of fit and age can do: the truth's own buying chance and lag
    distribution (``future_win_probability``). Engagement and stages since arrival must add to it, and the
    probabilities must be calibrated on the open leads as they are today, most of them far past the horizon."""
    cfg, truth = published
    home = Home(cfg.home)
    folder = read_latest(home.scores)
    scores = pd.read_parquet(folder / "scores.parquet")
    as_of = pd.Timestamp(json.loads((folder / "manifest.json").read_text())["as_of"])
    created = pd.read_parquet(home.canonical / "leads.parquet", columns=["lead_id", "created_at"])
    d = scores.merge(created, on="lead_id").merge(truth, left_on="lead_id", right_on="Lead ID")
    assert len(d) == len(scores) >= 100_000
    won = pd.to_datetime(d["won_at"], utc=True)
    horizon = pd.Timedelta(days=cfg.label.horizon_days)
    future = ((won > as_of) & (won <= as_of + horizon)).to_numpy(int)
    age = ((as_of - pd.to_datetime(d["created_at"], utc=True)).dt.total_seconds() / 86400).to_numpy()
    reference = future_win_probability(d["buy_probability"].to_numpy(), age, cfg.label.horizon_days)
    assert (age > cfg.label.horizon_days).mean() > 0.6  # most open leads are past the horizon
    assert future.sum() >= 1_000  # enough future wins to measure against

    p, fit = d["probability"].to_numpy(), d["fit"].to_numpy()

    def top_rate(values):
        return future[np.argsort(-values, kind="stable")[:QUEUE_CAPACITY]].mean()

    measured = {
        "open_leads": len(d), "future_rate": future.mean(), "mean_probability": p.mean(), "mean_fit": fit.mean(),
        "auc": roc_auc_score(future, p), "auc_fit": roc_auc_score(future, fit),
        "auc_reference": roc_auc_score(future, reference),
        "top_k": top_rate(p), "top_k_fit": top_rate(fit), "top_k_reference": top_rate(reference),
        "ece": expected_calibration_error(future, p),
    }
    print({k: round(float(v), 4) for k, v in measured.items()})
    assert measured["top_k"] >= 2 * measured["top_k_fit"], measured
    assert measured["top_k"] >= measured["top_k_reference"], measured
    assert measured["auc"] >= measured["auc_reference"], measured
    assert abs(measured["mean_probability"] / measured["future_rate"] - 1) <= 0.10, measured
    assert measured["ece"] <= 0.005, measured

    # The rep queues take leads that are alive now, not the old ones whose arrival looked good.
    routed = d["route"].isin(["sdr-europe", "sdr-americas", "sdr-global"]).to_numpy()
    assert routed.sum() == QUEUE_CAPACITY
    assert np.median(age[routed]) < np.median(age)


def test_accounts_rank_the_companies_whose_leads_win_next(published):
    """accounts.csv from the published open leads, against the generator's future: accounts where at least one
    open lead wins in the next horizon are ranked above those where none does, the chances are calibrated
    (computed as if a company's leads were independent, which the generator's are given their chances), and
    expected wins add up to the published probabilities. The campaign report carries the top of the ranking."""
    cfg, truth = published
    home = Home(cfg.home)
    folder = read_latest(home.scores)
    accounts = pd.read_parquet(folder / "accounts.parquet")
    scores = pd.read_parquet(folder / "scores.parquet", columns=["lead_id", "probability"])
    as_of = pd.Timestamp(json.loads((folder / "manifest.json").read_text())["as_of"])
    leads = pd.read_parquet(home.canonical / "leads.parquet", columns=["lead_id", "account"])
    d = scores.merge(leads, on="lead_id").merge(truth, left_on="lead_id", right_on="Lead ID")
    won = pd.to_datetime(d["won_at"], utc=True)
    d["future"] = (won > as_of) & (won <= as_of + pd.Timedelta(days=cfg.label.horizon_days))
    realized = d[d["account"].notna()].groupby("account")["future"].any()
    a = accounts.set_index("account").join(realized)
    chance, hit = a["chance_any_win"].to_numpy(), a["future"].to_numpy(int)
    measured = {"accounts": len(a), "shared": int((a["open_leads"] > 1).sum()), "hit_rate": hit.mean(),
                "mean_chance": chance.mean(), "auc": roc_auc_score(hit, chance),
                "ece": expected_calibration_error(hit, chance), "top_100_hits": hit[:100].mean()}
    print({k: round(float(v), 4) for k, v in measured.items()})
    assert len(a) == d["account"].nunique() and a["open_leads"].sum() == d["account"].notna().sum()
    assert measured["shared"] >= 1_000  # accounts are shared by leads here
    assert a["expected_wins"].sum() == pytest.approx(d.loc[d["account"].notna(), "probability"].sum(), rel=1e-6)
    assert measured["auc"] >= 0.85, measured
    assert abs(measured["mean_chance"] / measured["hit_rate"] - 1) <= 0.15 and measured["ece"] <= 0.02, measured
    assert measured["top_100_hits"] >= 5 * measured["hit_rate"], measured
    page = (read_latest(home.campaign_reports) / "index.html").read_text(encoding="utf-8")
    assert "Accounts most likely to buy" in page and html.escape(accounts["account"].iloc[0]) in page


def test_campaign_expected_closes_against_the_truth(published):
    """Expected closes per campaign against the sum of the truth's probabilities, for campaigns of 500 leads or
    more. Mostly matured: within 10 % for at least 75 % of them (knowing every matured outcome gets about 80 %
    there, the noise floor). Fewer than half matured, where the lead model meets campaigns it has barely seen
    and early wins must be read against their exposure: median error at most 25 %, none off by 2x. The 90 %
    intervals must hold the closes the generator's future brings (most campaigns, not all: the factor on a
    campaign is estimated, and its leads' chances are not independent of its other leads')."""
    cfg, truth = published
    folder = read_latest(Home(cfg.home).campaign_reports)
    table = pd.read_parquet(folder / "campaign_quality.parquet").set_index("campaign")
    leads = pd.read_parquet(Home(cfg.home).canonical / "leads.parquet", columns=["lead_id", "campaign"])
    d = leads.merge(truth, left_on="lead_id", right_on="Lead ID")
    true = d.groupby("campaign")["true_probability"].sum()
    final = d.groupby("campaign")["won_within_horizon"].sum()
    big = table[table["leads"] >= 500]
    error = (big["expected_closes"] / true.reindex(big.index) - 1).abs()
    matured = big["matured_share"] >= 0.5
    print({"campaigns": len(big), "mostly_matured": int(matured.sum()),
           "within_10pct": round(float((error[matured] <= 0.10).mean()), 3),
           "young_median_error": round(float(error[~matured].median()), 3),
           "young_max_error": round(float(error[~matured].max()), 3)})
    assert matured.sum() >= 30 and (~matured).sum() >= 8
    assert (error[matured] <= 0.10).mean() >= 0.75, error[matured].sort_values().tail()
    assert error[~matured].median() <= 0.25, error[~matured].sort_values()
    ratio = big["expected_closes"] / true.reindex(big.index)
    assert ((ratio < 2) & (ratio > 0.5)).all(), ratio.sort_values()
    later = final.reindex(big.index)
    inside = (later >= big["expected_closes_low"]) & (later <= big["expected_closes_high"])
    assert inside.mean() >= 0.8, inside.mean()
    # Nothing lost: every lead belongs to one row, and the wins known so far add up.
    assert table["leads"].sum() == len(leads)
    assert table["closes_so_far"].sum() <= final.sum()


def _expected_auc(score: np.ndarray, p: np.ndarray) -> float:
    """The ROC AUC ``score`` has in expectation when each lead wins with probability ``p`` (ties count half)."""
    order = np.argsort(score, kind="stable")
    q = p[order]
    below = np.cumsum(1 - q) - (1 - q)  # expected losers scored lower (ties aside: scores here are continuous)
    return float((q * below).sum() / (q.sum() * (1 - q).sum() - (q * (1 - q)).sum()))


def test_young_leads_fit_against_the_truth(published):
    """Issue 15's acceptance on the leads younger than the horizon (their outcomes unknown to every model): the
    published fit, with its campaign's outcome factor, within 5 % of the truth's mean and within 0.02 of the
    truth's own expected ROC AUC. The fit alone cannot know the campaigns that started in the last months."""
    cfg, truth = published
    home = Home(cfg.home)
    folder = read_latest(home.scores)
    scores = pd.read_parquet(folder / "scores.parquet", columns=["lead_id", "fit"])
    as_of = pd.Timestamp(json.loads((folder / "manifest.json").read_text())["as_of"])
    created = pd.read_parquet(home.canonical / "leads.parquet", columns=["lead_id", "created_at"])
    d = scores.merge(created, on="lead_id").merge(truth, left_on="lead_id", right_on="Lead ID")
    young = (as_of - pd.to_datetime(d["created_at"], utc=True)) < pd.Timedelta(days=cfg.label.horizon_days)
    fit, true = d.loc[young, "fit"].to_numpy(), d.loc[young, "true_probability"].to_numpy()
    gap = _expected_auc(true, true) - _expected_auc(fit, true)
    print({"young_open_leads": int(young.sum()), "mean_fit": round(float(fit.mean()), 4),
           "mean_true": round(float(true.mean()), 4), "expected_auc_gap": round(gap, 4)})
    assert young.sum() >= 10_000
    assert abs(fit.mean() / true.mean() - 1) <= 0.05
    assert gap <= 0.02


def test_forward_calibration_follows_drift(published):
    """The same export cut 150 days before its end and trained there once (no model of a win from now on: this
    is about the fit). The registered model (refit on every lead mature at the cut, with the campaign outcome
    factors of the leads young at the cut), scored forward on the leads it never saw whose outcomes the full
    export knows: ROC AUC within 0.035 of the true probabilities' on the same leads and above the model's
    without the factors, nearer the truth lead by lead than without them or than the evaluated model, ECE <= 0.02
    and the mean within 15 % of what they realized.

    Measured here: ROC AUC 0.803 with the factors, 0.774 without, 0.823 for the truth; mean |p - true p| 0.040,
    0.059 without. The level is where the factors help least: the leads after the cut fall in a different part
    of the generator's season than those young at the cut, and realize 14 % less than predicted (11 % without the
    factors). On the same generator at 300,000 and 520,000 leads the refit alone over-predicts the leads after
    the cut by 32 % and 16 %, and the factors bring that to 6 % and 4 % (ECE 0.040 -> 0.008, 0.023 -> 0.006)."""
    from datetime import timedelta

    from features.build import build_features
    from features.store import load_feature_set
    from ingest.canonical import read_canonical
    from models.metrics import against_truth
    from models.train import train_model

    cfg, truth = published
    home = Home(cfg.home)
    full, meta = load_feature_set(home.features_file)
    cut = pd.Timestamp(meta["as_of"]) - timedelta(days=150)
    trained = train_model(build_features(read_canonical(home.canonical, lazy=True), cfg, cut.to_pydatetime()), cfg,
                          as_of=cut)
    assert trained.split_counts["test_leads"] >= 15_000

    model = trained.model
    frame = full.frame.to_pandas()
    unseen = frame[(frame["created_at"] > model.trained_through) & frame["mature"]]
    assert len(unseen) >= 30_000
    y = unseen["label"].to_numpy()
    plain = model.probability(unseen)
    measured = {}
    for name, q in (("registered", model.outcome_factors.apply(unseen, plain)), ("without_factors", plain),
                    ("evaluated", model.evaluated.probability(unseen))):  # never saw the newest 30 % of outcomes
        f = against_truth(unseen[["lead_id", "label"]].assign(probability=q), truth, "Lead ID", "true_probability")
        measured[name] = {"ece": round(expected_calibration_error(y, q), 4), "citl": round(q.mean() / y.mean() - 1, 4),
                          "mae": round(f["mean_abs_error_truth"], 4), "auc": round(roc_auc_score(y, q), 4),
                          "auc_truth": round(f["roc_auc_truth"], 4)}
    print(f"forward on {len(unseen):,} leads: {measured}")
    registered = measured["registered"]
    assert registered["auc"] >= registered["auc_truth"] - 0.035, measured
    assert registered["auc"] > measured["without_factors"]["auc"], measured
    assert registered["mae"] < min(measured["without_factors"]["mae"], measured["evaluated"]["mae"]), measured
    assert registered["ece"] <= 0.02 and abs(registered["citl"]) <= 0.15, measured
