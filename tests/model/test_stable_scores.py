"""Scores that do not churn on noise: the same export plus a few ordinary new leads, retrained in the same home
(the first run's model in service), keeps the other open leads' tiers and probabilities.

The new leads arrive an hour after everything else, so the export's date moves with them: every open lead is
an hour older, and the landmark rows whose window closed in that hour (7 of about 29,000) join the training
rows of the model of a win from now on. What keeps the fit still: no row bagging (its draws depend on the row
count), time-telling groups decided as by the model in service while the difference they make is within noise
(on these rows the landmark booster's month of sign-up went from 0.0010 better to 0.0015 worse, and dropping it
moved one lead by 0.44), and the number of trees taken where the validation curve flattens. The model of a win from now on is refit on rows that did change, and a booster's
split choices are chaotic on rare paths: on these rows, dropping a single training row moves the largest
probability by 0.21-0.25 and the 99th percentile by 0.04-0.05, whether the landmark rows sit at the exact
landmark ages or at ages drawn in their spans. (With exact ages no landmark row of this export closed in the
hour, so the two runs trained on the same rows and this test saw only 5 leads move, by up to 0.135; it did
not refit anything.) So: the tiers hold (98.3 %), the median move is under 0.001, a few per cent of leads move
by more than 0.02, and the largest by 0.29, where issue 15 asks for 0.02. Five seeded boosters averaged halve the
99th percentile at five times the training and scoring time, which the speed targets do not allow; that bound
is left open."""

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


def test_a_few_ordinary_new_leads_move_no_other_score(tmp_path, caplog):
    before_export, after_export = tmp_path / "before", tmp_path / "after"
    write_crm(generate_crm(8_000, seed=41), before_export)
    write_crm(generate_crm(8_000, seed=41), after_export)
    leads = pd.read_csv(after_export / "leads.csv", dtype=str, keep_default_na=False)
    # Two ordinary leads arriving an hour after everything else (so the export's date moves with them), each
    # from a campaign and a company of its own.
    latest = max(pd.to_datetime(pd.read_csv(after_export / name, usecols=[column])[column]).max()
                 for name, column in (("leads.csv", "Created Date"), ("activities.csv", "Activity Date"),
                                      ("opportunities.csv", "Stage Date")))
    extra = leads.tail(2).copy()
    extra["Lead ID"] = ["NEW-1", "NEW-2"]
    extra["Created Date"] = (latest + pd.Timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    extra["Campaign"] = ["Webinar 901", "Paid Search 902"]
    extra["Company"] = ["Newco One Ltd", "Newco Two GmbH"]
    pd.concat([leads, extra]).to_csv(after_export / "leads.csv", index=False)

    # Retrained in the same home, as a schedule would: the first run's model is in service for the second.
    before, rows_before = _run(before_export, tmp_path / "home", "before")
    caplog.set_level(logging.INFO, logger="leadscore")
    after, rows_after = _run(after_export, tmp_path / "home", "after")
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
