"""Any real export maps: columns may carry the names leadscore uses itself, in every table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import TEST_SETTINGS
from flows import steps
from ingest.synthetic import generate_crm, write_crm
from leadscore.config import parse_config

# Every export column renamed to a name the pipeline uses for something else: canonical columns, feature names
# it generates, the landmark rows' bookkeeping and published columns.
LEADS = {"Lead ID": "lead_id", "Created Date": "created_at", "Campaign": "campaign", "Lead Source": "source",
         "Company": "account", "Country": "label", "Industry": "campaign_name", "Job Level": "created_month",
         "Employees": "is_open", "Owner": "owner"}
COPIES = {"mature": "is_open", "won_at": "label", "at": "label", "weight": "is_open", "landmark_days": "is_open",
          "days_since_last_activity": "is_open", "source_name": "label", "export:label": "label"}


@pytest.mark.slow
def test_an_export_with_columns_named_like_every_canonical_column_runs_end_to_end(tmp_path):
    export = tmp_path / "crm"
    write_crm(generate_crm(4_000, seed=23), export)
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False).rename(columns=LEADS)
    for name, source in COPIES.items():
        leads[name] = leads[source]
    leads.to_csv(export / "leads.csv", index=False)
    renames = {"activities.csv": {"Lead ID": "lead_id", "Activity Type": "type", "Activity Date": "occurred_at"},
               "opportunities.csv": {"Lead ID": "lead_id", "Stage": "stage", "Stage Date": "occurred_at",
                                     "Amount": "amount"},
               "campaigns.csv": {"Campaign": "campaign", "Channel": "channel", "Cost": "cost"}}
    for name, columns in renames.items():
        pd.read_csv(export / name, dtype=str, keep_default_na=False).rename(columns=columns).to_csv(export / name,
                                                                                                     index=False)
    text = f"""
home = "{(tmp_path / 'home').as_posix()}"
[data.leads]
path = "{(export / 'leads.csv').as_posix()}"
id = "lead_id"
created_at = "created_at"
campaign = "campaign"
source = "source"
account = "account"
categorical = ["label", "campaign_name", "created_month", "won_at", "at", "source_name", "export:label"]
numeric = ["is_open", "mature", "weight", "landmark_days", "days_since_last_activity"]
passthrough = ["owner"]
[data.outcomes]
path = "{(export / 'opportunities.csv').as_posix()}"
lead_id = "lead_id"
stage = "stage"
occurred_at = "occurred_at"
amount = "amount"
[data.activities]
path = "{(export / 'activities.csv').as_posix()}"
lead_id = "lead_id"
type = "type"
occurred_at = "occurred_at"
[data.campaigns]
path = "{(export / 'campaigns.csv').as_posix()}"
campaign = "campaign"
cost = "cost"
channel = "channel"
[label]
won_stages = ["Closed Won"]
lost_stages = ["Closed Lost"]
other_stages = ["Qualified", "Proposal"]
horizon_days = 90
[routing]
fallback = "nurture"
[[routing.queues]]
name = "sdr"
capacity = 50
tiers = ["A", "B"]
where = {{ label = ["United States", "Canada"] }}
""" + TEST_SETTINGS
    cfg = parse_config(text, tmp_path / "odd.toml")
    steps.ingest_step(cfg, "odd")
    features = steps.features_step(cfg)
    trained = steps.train_step(cfg, "odd")
    assert trained["promoted"], trained["gate_reasons"]
    scored = steps.score_step(cfg, "odd")
    steps.report_step(cfg, "odd")
    published = pd.read_csv(f"{scored['published']}/scores.csv", dtype=str, keep_default_na=False)
    manifest = json.loads(open(f"{scored['published']}/manifest.json", encoding="utf-8").read())
    assert len(published) == manifest["rows"]["published"] == features["counts"]["open"]
    assert {"lead_id", "probability", "fit", "tier", "route", "campaign", "source", "owner"} <= set(published.columns)
    assert set(published["route"]) <= {"sdr", "nurture"} and (published["route"] == "sdr").sum() <= 50
    # The mapped columns kept their own values: the one named like the label is a country, not an outcome.
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False).set_index("lead_id")
    assert (published["owner"].to_numpy() == leads.loc[published["lead_id"], "owner"].to_numpy()).all()
