"""`leadscore init` on awkward exports: typed Parquet, semicolons with decimal commas, empty and header-only
files, a second file that looks like stage history. The proposal must still be a config that loads, and map
what it should."""

import pyarrow.parquet as pq

from ingest.discover import propose_config
from ingest.synthetic import generate_crm, write_crm
from leadscore.config import parse_config


def test_awkward_exports_still_give_a_config_that_loads(tmp_path):
    crm = generate_crm(1_000, seed=9)
    export = tmp_path / "export"
    write_crm(crm, export)
    (export / "truth.csv").unlink()
    leads = crm.leads.to_pandas()
    # Typed Parquet leads beside an empty file and a header-only file with more columns than the leads.
    (export / "leads.csv").unlink()
    leads["Paid Amount"] = leads["Employees"].astype(float) * 1.5
    leads["Account ID"] = [f"A{i}" for i in range(len(leads))]
    pq.write_table(crm.leads.append_column("Paid Amount", [leads["Paid Amount"].to_numpy()])
                   .append_column("Account ID", [leads["Account ID"].to_numpy()]), export / "leads.parquet")
    (export / "empty.csv").write_bytes(b"")
    (export / "template.csv").write_text(",".join([*leads.columns, "Extra 1", "Extra 2", "Extra 3"]) + "\n")
    # Campaign costs written with semicolons and decimal commas.
    costs = crm.campaigns.to_pandas()
    costs["Cost"] = costs["Cost"].map(lambda v: f"{v:.2f}".replace(".", ","))
    costs.to_csv(export / "campaigns.csv", sep=";", index=False)
    # An activities file that also has a Status column, named so it sorts before the real stage history.
    acts = crm.activities.to_pandas().assign(Status="Completed", Stage="Done")
    acts.to_csv(export / "a_tasks.csv", index=False)

    proposal = propose_config(export)
    cfg = parse_config(proposal.text, tmp_path / "leadscore.toml")
    lc = cfg.data.leads
    assert lc.path.name == "leads.parquet" and lc.id == "Lead ID" and lc.created_at == "Created Date"
    assert "Employees" in lc.numeric and "Paid Amount" in lc.numeric  # a name ending in "id" is not an id
    assert "Account ID" in proposal.left_out and "Lead Status" in proposal.left_out
    assert cfg.data.outcomes.path.name == "opportunities.csv" and cfg.label.won_stages == ("Closed Won",)
    assert cfg.data.campaigns.cost == "Cost" and cfg.data.campaigns.path.name == "campaigns.csv"
    said = " ".join(proposal.warnings)
    assert "empty.csv" in said and "template.csv" in said and "a_tasks.csv" in said


def test_a_column_named_like_a_lead_id_that_is_not_one_is_passed_over(tmp_path):
    """A snapshot export whose "lead_id" column is a third empty and full of repeats (another system's key),
    while "Customer Number" is filled and unique: the proposal takes the one that identifies a lead, and says
    why."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(4)
    n = 600
    other_key = np.where(rng.random(n) < 0.3, "", rng.integers(0, 150, n).astype(str))
    pd.DataFrame({"lead_id": other_key, "Customer Number": [f"C{i:05d}" for i in range(n)],
                  "Country": rng.choice(["US", "DE", "FR"], n), "converted": rng.choice(["yes", "no", ""], n),
                  "campaign": rng.integers(0, 12, n)}).to_csv(tmp_path / "customers.csv", index=False)
    proposal = propose_config(tmp_path)
    cfg = parse_config(proposal.text, tmp_path / "leadscore.toml")
    assert cfg.data.leads.id == "Customer Number" and cfg.data.leads.label == "converted"
    assert any("'lead_id' is not an id" in w and "'Customer Number'" in w for w in proposal.warnings)
    # "campaign" here counts contacts (as in the bank-marketing export): mapped by its name, with a warning.
    assert any("'campaign' is mapped as the campaign, but it holds numbers" in w for w in proposal.warnings)

    # With a stage file that names leads by "lead_id", that column stays the id (its repeats are quarantined):
    # another column would leave every stage row without its lead.
    pd.DataFrame({"lead_id": other_key[:50], "Stage": "Closed Won", "Stage Date": "2025-01-01"}).to_csv(
        tmp_path / "stages.csv", index=False)
    pd.read_csv(tmp_path / "customers.csv").assign(**{"Created Date": "2024-12-01"}).to_csv(
        tmp_path / "customers.csv", index=False)
    proposal = propose_config(tmp_path)
    assert parse_config(proposal.text, tmp_path / "leadscore.toml").data.leads.id == "lead_id"
    assert any("the lead id 'lead_id' has" in w for w in proposal.warnings)


def test_dates_with_the_day_first_are_proposed_and_read_with_data_date_order(tmp_path):
    import pandas as pd
    import pytest

    from flows import steps
    from ingest.canonical import ingest
    from leadscore.errors import DataError

    export = tmp_path / "export"
    write_crm(generate_crm(1_000, seed=9), export)
    (export / "truth.csv").unlink()
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False)
    iso = pd.to_datetime(leads["Created Date"])
    leads["Created Date"] = iso.dt.strftime("%d/%m/%Y %H:%M")  # as a European spreadsheet writes it
    leads.to_csv(export / "leads.csv", index=False)

    proposal = propose_config(export)
    cfg = parse_config(proposal.text, tmp_path / "leadscore.toml").with_home(tmp_path / "home")
    assert cfg.data.date_order == "DMY" and cfg.data.leads.created_at == "Created Date"
    assert any("day first" in w and "data.date_order = 'DMY'" in w for w in proposal.warnings)
    read = ingest(cfg).tables["leads"].to_pandas().set_index("lead_id")["created_at"]
    assert (read.loc[leads["Lead ID"]].to_numpy() == iso.dt.floor("min").dt.tz_localize("UTC").to_numpy()).all()

    # The first rows of a date-sorted export may hold only the 1st to the 13th: one 13th settles it.
    early = iso.apply(lambda t: t.replace(day=t.day % 13 + 1))
    leads.assign(**{"Created Date": early.dt.strftime("%d/%m/%Y %H:%M")}).to_csv(export / "leads.csv", index=False)
    assert parse_config(propose_config(export).text, tmp_path / "early.toml").data.date_order == "DMY"
    leads.to_csv(export / "leads.csv", index=False)

    # Without the setting every creation date is unreadable, and the error says which key reads them.
    bare = cfg.model_copy(update={"data": cfg.data.model_copy(update={"date_order": None})})
    with pytest.raises(DataError, match=r"Created Date writes dates with the year last \('\d\d/\d\d/\d{4} \d\d:\d\d'\): "
                                        r"set data.date_order = \"DMY\" \(day first\) or \"MDY\""):
        steps.ingest_step(bare, "r1")
