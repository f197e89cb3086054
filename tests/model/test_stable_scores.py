"""Scores that do not churn on noise: the same export plus a few ordinary new leads, retrained in the same home
(the previous run's model in service), keeps the other open leads' tiers and probabilities.

New leads at the export's last moment change nothing else, and nothing else moves: not a tier, not a
probability (no row bagging, whose draws depend on the row count; no category code that shifts when a campaign
is added; time-telling groups decided as by the model in service while their difference is within noise).

The same leads an hour later are harder: the export's date moves with them, every open lead is an hour older,
and the landmark rows whose window closed in that hour (7 of about 29,000) join the training rows of the model
of a win from now on, which is refit. The hour alone, scored by the same model, moves one lead by 0.064 and
keeps every tier. The refit moves more: a booster's split choices are chaotic on rare paths, and on these rows
dropping a single training row moves the largest probability by 0.21-0.25 (99th percentile 0.04-0.05). What
was tried against it, each on this test's two runs: a lower learning rate (0.03: largest move 0.19), stronger
L2 (10: 0.21), fewer leaves, coarser bins, extra trees, categorical smoothing (0.22-0.39 all), the number of
trees held fixed (0.28), and keeping the trees of the model in service with their leaves refit on the new rows
(LightGBM's ``Booster.refit``: 0.26; refit on the very rows it was trained on, it already moves a toy model by
0.29). Five seeded boosters averaged halve the 99th percentile at five times the training and scoring time;
bagged boosters (``train.bags``, off by default, and too few rows here for a bag) halve the largest move. So
here the tiers hold (98.3 %), the median move is under 0.001, a few per cent of leads move by more than 0.02,
and the largest by 0.29, where issue 15 asks for 0.02; that bound is left open."""

import logging

import pandas as pd
import pytest

from conftest import make_config
from flows import steps
from ingest.synthetic import generate_crm, write_crm

pytestmark = pytest.mark.slow


def _run(export, home, run_id):
    cfg = make_config(export, home)
    steps.ingest_step(cfg, run_id)
    steps.features_step(cfg)
    trained = steps.train_step(cfg, run_id)
    assert trained["promoted"], trained["gate_reasons"]
    published = steps.score_step(cfg, run_id)["published"]
    return pd.read_parquet(f"{published}/scores.parquet").set_index("lead_id"), trained["split"]


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
    before, rows_before = _run(before_export, tmp_path / "home", "before")

    # New leads at the export's last moment: nothing else changed, so nothing else may move (no row bagging, no
    # category codes that shift when a campaign is added, no count over every lead).
    same, rows_same = _run(_with_new_leads(tmp_path, "same", pd.Timedelta(0)), tmp_path / "home", "same")
    assert rows_same["now_final_fit_rows"] == rows_before["now_final_fit_rows"]
    assert {"NEW-1", "NEW-2"} <= set(same.index)
    common = before.index.intersection(same.index)
    assert len(common) == len(before)
    assert (before.loc[common, "tier"] == same.loc[common, "tier"]).all()
    assert (before.loc[common, ["probability", "fit"]] - same.loc[common, ["probability", "fit"]]).abs().max().max() <= 1e-9

    # The same leads an hour later: the export's date moves with them, every open lead is an hour older, and the
    # landmark rows whose window closed in that hour join the training rows of the model of a win from now on.
    caplog.set_level(logging.INFO, logger="leadscore")
    after, rows_after = _run(_with_new_leads(tmp_path, "after", pd.Timedelta(hours=1)), tmp_path / "home", "after")
    assert "month of sign-up kept as by the model in service" in caplog.text
    # The hour that passed brought training rows to the model of a win from now on: its refit is what is tested.
    assert rows_after["now_final_fit_rows"] > rows_before["now_final_fit_rows"]
    assert {"NEW-1", "NEW-2"} <= set(after.index)
    common = before.index.intersection(after.index)
    assert len(common) == len(before)
    same_tier = (before.loc[common, "tier"] == after.loc[common, "tier"]).mean()
    moved = (before.loc[common, ["probability", "fit"]] - after.loc[common, ["probability", "fit"]]).abs().max()
    print(f"same tier {same_tier:.2%}; largest move: probability {moved['probability']:.4f}, fit {moved['fit']:.4f}")
    assert same_tier >= 0.98
    assert moved["fit"] <= 0.02
    typical = (before.loc[common, "probability"] - after.loc[common, "probability"]).abs()
    assert typical.median() <= 0.001 and (typical > 0.02).mean() <= 0.05
