"""Scores that do not churn on noise: the same export plus a few ordinary new leads, retrained in the same home
(the previous run's model in service), keeps the other open leads' tiers and probabilities.

New leads at the export's last moment change nothing else, so nothing else moves, even when the refit replaces
the champion: not a tier, not a probability (no row bagging, whose draws depend on the row count; no category
code that shifts when a campaign is added; time-telling groups decided as by the model in service while their
difference is within noise).

The same leads an hour later are harder: the export's date moves with them, every open lead is an hour older,
and the landmark rows whose window closed in that hour (7 of about 29,000) join the training rows of the model
of a win from now on. Its refit would move some leads by chance (a booster's split choices are chaotic on rare
paths: dropping one training row moves the largest probability by 0.21-0.25 here, and the refit by 0.29,
README "Stable scores"), but it is no better beyond noise, so the gate keeps the recent champion and only the
hour moves anything: 68 of 6,482 open leads, three by more than 0.02, the largest by 0.064 (open for 5 days,
then 6)."""

import logging

import pandas as pd
import pytest

from conftest import make_config
from flows import steps
from ingest.synthetic import generate_crm, write_crm

pytestmark = pytest.mark.slow


def _run(export, home, run_id, keep_champion_days=None):
    cfg = make_config(export, home)
    if keep_champion_days is not None:
        cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"keep_champion_days": keep_champion_days})})
    steps.ingest_step(cfg, run_id)
    steps.features_step(cfg)
    trained = steps.train_step(cfg, run_id)
    published = steps.score_step(cfg, run_id)["published"]
    return pd.read_parquet(f"{published}/scores.parquet").set_index("lead_id"), trained


def _with_new_leads(tmp_path, name: str, later: pd.Timedelta):
    """The generator's export plus two ordinary leads arriving ``later`` after everything else, each from a
    campaign and a company of its own."""
    export = tmp_path / name
    write_crm(generate_crm(8_000, seed=41), export)
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False)
    latest = max(pd.to_datetime(pd.read_csv(export / file, usecols=[column])[column]).max()
                 for file, column in (("leads.csv", "Created Date"), ("activities.csv", "Activity Date"),
                                      ("opportunities.csv", "Stage Date")))
    extra = leads.tail(2).copy()
    extra["Lead ID"] = ["NEW-1", "NEW-2"]
    extra["Created Date"] = (latest + later).strftime("%Y-%m-%d %H:%M:%S")
    extra["Campaign"] = ["Webinar 901", "Paid Search 902"]
    extra["Company"] = ["Newco One Ltd", "Newco Two GmbH"]
    pd.concat([leads, extra]).to_csv(export / "leads.csv", index=False)
    return export


def test_a_few_ordinary_new_leads_move_no_other_score(tmp_path, caplog):
    before_export = tmp_path / "before"
    write_crm(generate_crm(8_000, seed=41), before_export)
    # Retrained in the same home, as a schedule would: the model in service is the previous run's.
    before, first = _run(before_export, tmp_path / "home", "before")
    assert first["promoted"], first["gate_reasons"]

    # New leads at the export's last moment: nothing else changed, so nothing else may move, even in a model that
    # replaces the champion (no row bagging, no category codes that shift when a campaign is added, no count over
    # every lead).
    same, refit = _run(_with_new_leads(tmp_path, "same", pd.Timedelta(0)), tmp_path / "home", "same",
                       keep_champion_days=0)
    assert refit["promoted"], refit["gate_reasons"]
    assert refit["split"]["now_final_fit_rows"] == first["split"]["now_final_fit_rows"]
    assert {"NEW-1", "NEW-2"} <= set(same.index)
    common = before.index.intersection(same.index)
    assert len(common) == len(before)
    assert (before.loc[common, "tier"] == same.loc[common, "tier"]).all()
    assert (before.loc[common, ["probability", "fit"]] - same.loc[common, ["probability", "fit"]]).abs().max().max() <= 1e-9

    # The same leads an hour later: the export's date moves with them, every open lead is an hour older, and the
    # landmark rows whose window closed in that hour join the training rows of the model of a win from now on.
    # Its refit is no better beyond noise, so the champion stays: what moves is what the hour changed.
    caplog.set_level(logging.INFO, logger="leadscore")
    after, later = _run(_with_new_leads(tmp_path, "after", pd.Timedelta(hours=1)), tmp_path / "home", "after")
    assert later["split"]["now_final_fit_rows"] > first["split"]["now_final_fit_rows"]
    assert later["kept"] and not later["promoted"], later["gate_reasons"]
    assert "month of sign-up kept as by the model in service" in caplog.text  # the refit still follows it
    assert {"NEW-1", "NEW-2"} <= set(after.index)
    assert (after["model_version"] == same["model_version"].iloc[0]).all()
    common = before.index.intersection(after.index)
    assert len(common) == len(before)
    same_tier = (before.loc[common, "tier"] == after.loc[common, "tier"]).mean()
    moved = (before.loc[common, ["probability", "fit"]] - after.loc[common, ["probability", "fit"]]).abs()
    print(f"same tier {same_tier:.2%}; largest move: probability {moved['probability'].max():.4f}, "
          f"fit {moved['fit'].max():.4f}; moved at all: {(moved['probability'] > 0).sum()}, by more than 0.02: "
          f"{(moved['probability'] > 0.02).sum()} of {len(common)}")
    # What moves is what the hour changed in a lead (its age, its time since each event): a few leads.
    assert same_tier >= 0.999
    assert moved["fit"].max() <= 1e-9
    assert (moved["probability"] > 0).mean() <= 0.05 and (moved["probability"] > 0.02).mean() <= 0.002
