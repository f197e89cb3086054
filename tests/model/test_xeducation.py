"""The real X Education export, in snapshot mode, through every step."""

import pandas as pd
import pytest
from conftest import xeducation_config

from flows import steps
from leadscore.paths import Home, read_latest

pytestmark = pytest.mark.slow


def test_x_education_runs_end_to_end(tmp_path):
    cfg = xeducation_config().with_home(tmp_path / "home")
    assert cfg.snapshot
    ingested = steps.ingest_step(cfg, "xe-1")
    assert ingested["counts"]["leads"] == {"rows_in": 9240, "kept": 9240, "quarantined": 0}
    built = steps.features_step(cfg)
    assert built["counts"]["positive"] == 3561 and built["counts"]["negative"] == 5679
    # No dates: no history, engagement or calendar features, and nothing post-contact.
    assert not any(f.startswith(("act_", "campaign_", "account_", "created_")) for f in built["features"])
    assert "tags" not in built["features"] and "lead_quality" not in built["features"]

    trained = steps.train_step(cfg, "xe-1")
    # Issue 15's bar on this file: ROC AUC 0.87 on the stratified split (measured 0.874), and not below the best
    # baseline on the same test leads (logistic regression 0.863, naive Bayes 0.830).
    m = trained["metrics"]
    assert m["roc_auc"] >= 0.87, m
    assert m["roc_auc"] >= max(m["baseline_logistic_roc_auc"], m["baseline_naive_bayes_roc_auc"]) - 0.005, m
    assert m["ece"] < 0.06

    steps.score_step(cfg, "xe-1")
    scores = pd.read_csv(read_latest(Home(cfg.home).scores) / "scores.csv")
    assert len(scores) == 5679  # the leads that have not converted
    assert "Lead Number" in scores.columns
    report = steps.report_step(cfg, "xe-1")
    assert (read_latest(Home(cfg.home).campaign_reports) / "source_quality.csv").is_file()
    # The file has sources but no campaign column: the report says so rather than rank one "(none)" row.
    assert report["summary"][0].startswith("No campaign column is mapped (data.leads.campaign)")


def test_init_on_x_education_leaves_out_what_its_readme_calls_post_contact(tmp_path):
    """`leadscore init` on the real export alone: a snapshot config (the outcome is `Converted`), the columns the
    data's README measured as post-contact left out by their names, and a model as good as the hand-written
    config's, unedited (defaults for everything else)."""
    import shutil

    from typer.testing import CliRunner

    from flows.cli import app
    from leadscore.config import load_config

    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(xeducation_config().data.leads.path, export / "leads.csv")
    out = tmp_path / "leadscore.toml"
    result = CliRunner().invoke(app, ["init", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = load_config(out).with_home(tmp_path / "home")
    lc = cfg.data.leads
    assert cfg.snapshot and lc.label == "Converted" and lc.source == "Lead Source"
    mapped = {*lc.categorical, *lc.numeric}
    assert not mapped & {"Tags", "Lead Quality", "Lead Profile", "Last Activity", "Last Notable Activity",
                         "Asymmetrique Activity Score", "Asymmetrique Profile Score", "Prospect ID"}
    assert {"Total Time Spent on Website", "What is your current occupation", "Lead Origin"} <= mapped
    steps.ingest_step(cfg, "xe-init")
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "xe-init")  # the leakage guard would stop here
    print({k: round(trained["metrics"][k], 4) for k in ("roc_auc", "ece")})
    assert trained["metrics"]["roc_auc"] > 0.83 and trained["metrics"]["ece"] < 0.06
