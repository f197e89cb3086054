"""`leadscore init` on exports laid out as Salesforce, HubSpot and Dynamics 365 write them, then the pipeline on the
config it wrote, unedited: the files recognised, post-outcome columns left out (so the leakage guard passes), the
CRM's write-back file published."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows import steps
from flows.cli import app
from ingest.synthetic import generate_crm
from leadscore.config import load_config
from leadscore.paths import Home, read_latest

pytestmark = pytest.mark.slow

STAGES = {"hubspot": {"Qualified": "Qualified To Buy", "Proposal": "Presentation Scheduled"},
          "dynamics": {"Qualified": "1-Qualify", "Proposal": "3-Propose", "Closed Won": "Won", "Closed Lost": "Lost"}}


def _export(crm: str, folder, seed: int) -> set[str]:
    """A 2,500-lead generator export written with ``crm``'s column names, plus the columns real exports carry:
    people's names and e-mails, free text, and columns filled in after the outcome (returned)."""
    g = generate_crm(2_500, seed=seed)
    leads, opps = g.leads.to_pandas(), g.opportunities.to_pandas()
    acts, camps = g.activities.to_pandas(), g.campaigns.to_pandas()
    rng = np.random.default_rng(seed)
    n = len(leads)
    won = leads["Lead ID"].isin(opps.loc[opps["Stage"] == "Closed Won", "Lead ID"]).to_numpy()
    first = rng.choice([f"Name{i}" for i in range(300)], n)
    last = rng.choice([f"Surname{i}" for i in range(900)], n)
    email = [f"{a}.{b}.{i}@example.com".lower() for i, (a, b) in enumerate(zip(first, last))]
    notes = [f"Met at event {i}; asked about pricing" for i in range(n)]
    hot = np.where(won, "Hot", rng.choice(["Warm", "Cold"], n))
    opps["Stage"] = opps["Stage"].replace(STAGES.get(crm, {}))
    folder.mkdir(parents=True)
    if crm == "salesforce":  # Lead report, Opportunity History report, Activity report, Campaign export
        pd.DataFrame({"Lead ID": leads["Lead ID"], "First Name": first, "Last Name": last, "Email": email,
                      "Title": leads["Job Level"], "Company / Account": leads["Company"],
                      "Lead Source": leads["Lead Source"], "Campaign Name": leads["Campaign"],
                      "Country": leads["Country"], "Industry": leads["Industry"],
                      "No. of Employees": leads["Employees"], "Lead Owner": leads["Owner"],
                      "Lead Status": leads["Lead Status"], "Rating": hot, "Converted": np.where(won, "1", "0"),
                      "Created Date": leads["Created Date"], "Description": notes}).to_csv(folder / "leads.csv", index=False)
        pd.DataFrame({"Opportunity ID": [f"006{i:07d}" for i in range(len(opps))], "Lead ID": opps["Lead ID"],
                      "From Stage": "", "To Stage": opps["Stage"], "Amount": opps["Amount"],
                      "Edit Date": opps["Stage Date"]}).to_csv(folder / "opportunity_history.csv", index=False)
        pd.DataFrame({"Lead ID": acts["Lead ID"], "Subject": "Follow up", "Task Subtype": acts["Activity Type"],
                      "Date": acts["Activity Date"], "Call Duration (seconds)": rng.integers(0, 900, len(acts))}
                     ).to_csv(folder / "activities.csv", index=False)
        pd.DataFrame({"Campaign Name": camps["Campaign"], "Type": camps["Channel"], "Status": "Completed",
                      "Actual Cost": camps["Cost"]}).to_csv(folder / "campaigns.csv", index=False)
        return {"Lead Status", "Rating", "Converted"}
    if crm == "hubspot":  # contacts, deal stage history, activities, campaigns
        pd.DataFrame({"Record ID": leads["Lead ID"], "First Name": first, "Last Name": last, "Email": email,
                      "Job Title": leads["Job Level"], "Company Name": leads["Company"],
                      "Original Source": leads["Lead Source"], "First Touch Converting Campaign": leads["Campaign"],
                      "Country/Region": leads["Country"], "Industry": leads["Industry"],
                      "Number of Employees": leads["Employees"], "Contact owner": leads["Owner"],
                      "Lifecycle Stage": np.where(won, "customer", "lead"), "Lead Status": leads["Lead Status"],
                      "HubSpot Score": np.where(won, 90, 10) + rng.integers(0, 10, n),
                      "Create Date": leads["Created Date"]}).to_csv(folder / "contacts.csv", index=False)
        pd.DataFrame({"Deal ID": [f"D{i}" for i in range(len(opps))], "Associated Contact ID": opps["Lead ID"],
                      "Deal Stage": opps["Stage"], "Date Entered Stage": opps["Stage Date"], "Amount": opps["Amount"]}
                     ).to_csv(folder / "deal_stage_history.csv", index=False)
        pd.DataFrame({"Associated Contact ID": acts["Lead ID"], "Activity Type": acts["Activity Type"],
                      "Activity Date": acts["Activity Date"]}).to_csv(folder / "activities.csv", index=False)
        pd.DataFrame({"Campaign Name": camps["Campaign"], "Campaign Type": camps["Channel"], "Spend": camps["Cost"]}
                     ).to_csv(folder / "campaigns.csv", index=False)
        return {"Lifecycle Stage", "Lead Status", "HubSpot Score"}
    ids = {c: f"CMP-{i:04d}" for i, c in enumerate(camps["Campaign"])}  # Dynamics: lookups hold record ids
    pd.DataFrame({"leadid": leads["Lead ID"], "createdon": leads["Created Date"], "firstname": first, "lastname": last,
                  "fullname": [f"{a} {b}" for a, b in zip(first, last)], "emailaddress1": email,
                  "jobtitle": leads["Job Level"], "companyname": leads["Company"],
                  "leadsourcecode": leads["Lead Source"], "campaignid": leads["Campaign"].map(ids),
                  "address1_country": leads["Country"], "industrycode": leads["Industry"],
                  "numberofemployees": leads["Employees"], "ownerid": leads["Owner"],
                  "statuscode": leads["Lead Status"], "statecode": np.where(won, "Qualified", "Open"),
                  "leadqualitycode": hot, "description": notes}).to_csv(folder / "lead.csv", index=False)
    pd.DataFrame({"opportunityid": [f"O{i}" for i in range(len(opps))], "originatingleadid": opps["Lead ID"],
                  "stepname": opps["Stage"], "modifiedon": opps["Stage Date"], "actualvalue": opps["Amount"]}
                 ).to_csv(folder / "opportunity.csv", index=False)
    pd.DataFrame({"activityid": [f"A{i}" for i in range(len(acts))], "regardingobjectid": acts["Lead ID"],
                  "activitytypecode": acts["Activity Type"], "actualstart": acts["Activity Date"],
                  "actualdurationminutes": rng.integers(0, 60, len(acts))}).to_csv(folder / "activitypointer.csv",
                                                                                   index=False)
    pd.DataFrame({"campaignid": camps["Campaign"].map(ids), "name": camps["Campaign"], "typecode": camps["Channel"],
                  "totalactualcost": camps["Cost"]}).to_csv(folder / "campaign.csv", index=False)
    return {"statuscode", "statecode", "leadqualitycode"}


WRITE_BACK = {"salesforce": ("salesforce_leads.csv", "Id"), "hubspot": ("hubspot_contacts.csv", "Record ID"),
              "dynamics": ("dynamics_predictivescores.csv", "msdyn_entityid")}


@pytest.mark.parametrize("crm, seed", [("salesforce", 61), ("hubspot", 62), ("dynamics", 63)])
def test_init_then_run_with_no_edit(crm, seed, tmp_path):
    export = tmp_path / "export"
    leaky = _export(crm, export, seed)
    out = tmp_path / "leadscore.toml"
    result = CliRunner().invoke(app, ["init", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = tomllib.loads(out.read_text(encoding="utf-8"))
    leads = written["data"]["leads"]
    assert written["publish"]["crm"] == [crm]  # recognised by its column names (--crm auto)
    assert set(written["data"]) == {"leads", "outcomes", "activities", "campaigns"}
    features = {*leads["categorical"], *leads["numeric"]}
    assert not features & leaky and all(f'"{c}": post-outcome' in out.read_text() for c in leaky)
    assert not features & {"First Name", "Email", "Description", "firstname", "emailaddress1", "fullname", "description"}
    assert len(features) >= 4 and leads["campaign"] and leads["account"] and leads["source"]
    assert written["label"]["won_stages"] == ["Won" if crm == "dynamics" else "Closed Won"]

    cfg = load_config(out)
    # The test's one change, beside the file: small exports have a noisy ECE (see conftest.TEST_SETTINGS).
    cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"max_ece": 0.1}),
                                 "train": cfg.train.model_copy(update={"num_threads": 1})})
    counts = steps.ingest_step(cfg, "r1")["counts"]
    assert all(c["quarantined"] == 0 for c in counts.values()), counts  # every row read as init mapped it
    steps.features_step(cfg)
    trained = steps.train_step(cfg, "r1")  # the leakage guard would stop here
    assert trained["promoted"], trained["gate_reasons"]
    steps.score_step(cfg, "r1")
    folder = read_latest(Home(cfg.home).scores)
    scores = pd.read_parquet(folder / "scores.parquet")
    name, key = WRITE_BACK[crm]
    back = pd.read_csv(folder / "crm" / name, dtype=str, keep_default_na=False)
    assert back[key].tolist() == scores["lead_id"].tolist() and len(scores) > 100


def test_a_deals_export_with_won_and_lost_dates_maps_and_runs(tmp_path):
    """A Pipedrive-style deals file: one row per deal, no stage history, the outcome as ``won_time`` / ``lost_time``
    (and a ``status`` and ``lost_reason`` filled in afterwards). `init` maps the dates as the outcome and leaves the
    rest out; the run learns from exactly the generator's wins."""
    g = generate_crm(3_000, seed=64)
    leads, opps = g.leads.to_pandas(), g.opportunities.to_pandas()
    first = opps.groupby(["Lead ID", "Stage"])["Stage Date"].min().unstack().apply(
        lambda dates: pd.to_datetime(dates).dt.strftime("%Y-%m-%d %H:%M:%S"))
    won_at = leads["Lead ID"].map(first["Closed Won"]).fillna("")
    lost_at = leads["Lead ID"].map(first["Closed Lost"]).where(won_at == "").fillna("")
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame({"id": leads["Lead ID"], "title": [f"Deal {i}" for i in range(len(leads))],
                  "org_name": leads["Company"], "channel": leads["Lead Source"], "Industry": leads["Industry"],
                  "Country": leads["Country"], "add_time": leads["Created Date"], "won_time": won_at,
                  "lost_time": lost_at, "status": np.where(won_at != "", "won", np.where(lost_at != "", "lost", "open")),
                  "lost_reason": np.where(lost_at != "", "Price", "")}).to_csv(export / "deals.csv", index=False)
    out = tmp_path / "leadscore.toml"
    result = CliRunner().invoke(app, ["init", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    leads_map = tomllib.loads(out.read_text(encoding="utf-8"))["data"]["leads"]
    assert (leads_map["created_at"], leads_map["won_at"], leads_map["lost_at"]) == ("add_time", "won_time", "lost_time")
    assert not {*leads_map["categorical"], *leads_map["numeric"]} & {"status", "lost_reason", "won_time", "title"}
    cfg = load_config(out)
    cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"max_ece": 0.1}),
                                 "train": cfg.train.model_copy(update={"num_threads": 1})})
    counts = steps.ingest_step(cfg, "r1")["counts"]
    assert counts["leads"]["quarantined"] == 0, counts
    features = steps.features_step(cfg)
    trained = steps.train_step(cfg, "r1")
    assert trained["promoted"], trained["gate_reasons"]
    frame = pd.read_parquet(Home(cfg.home).features_file, columns=["lead_id", "won_at"])
    assert int(frame["won_at"].notna().sum()) == int((won_at != "").sum()) > 50, features
