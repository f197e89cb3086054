"""Data tests: every row is kept or quarantined with a reason; formats are detected."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.canonical import ingest, write_quarantine
from leadscore.config import parse_config
from leadscore.errors import DataError

CONFIG = """
[data.leads]
path = "leads.csv"
id = "Lead ID"
created_at = "Created Date"
campaign = "Campaign"
categorical = ["Country"]
numeric = ["Employees"]
passthrough = ["Owner"]
[data.outcomes]
path = "stages.csv"
lead_id = "Lead ID"
stage = "Stage"
occurred_at = "Stage Date"
amount = "Amount"
[data.activities]
path = "activities.csv"
lead_id = "Lead ID"
type = "Type"
occurred_at = "When"
[data.campaigns]
path = "campaigns.csv"
campaign = "Campaign"
cost = "Cost"
[label]
won_stages = ["Closed Won"]
"""

LEADS = """Lead ID,Created Date,Campaign,Country,Employees,Owner
L1,2025-01-01 10:00:00,Spring,US,120,Ann
L2,2025-01-02T11:00:00Z,Spring,DE,"1,200",Bob
,2025-01-03 09:00:00,Spring,US,5,Ann
L3,not a date,Spring,US,5,Ann
L4,2031-01-01 00:00:00,Spring,US,5,Ann
L5,2025-01-04 09:00:00,Spring,US,many,Ann
L1,2025-01-05 09:00:00,Spring,US,7,Ann
L6,,Autumn,FR,,Cid
L7,2025-02-01 08:00:00+02:00,Autumn,FR,,Cid
"""

STAGES = """Lead ID,Stage,Stage Date,Amount
L1,Closed Won,2025-02-01 00:00:00,5000
L2,Qualified,2025-01-10 00:00:00,
L9,Closed Won,2025-02-01 00:00:00,100
L2,,2025-01-11 00:00:00,
L2,Closed Lost,yesterday,
L7,Closed Won,2024-12-01 00:00:00,
L7,Closed Won,2025-03-01 00:00:00,lots
"""

ACTIVITIES = """Lead ID,Type,When
L1,Web Visit,2024-12-30 10:00:00
L9,Web Visit,2024-12-30 10:00:00
L2,,2024-12-30 10:00:00
L2,Email Open,someday
"""

CAMPAIGNS = """Campaign,Cost
Spring,1000
Autumn,ten
Spring,2000
"""


def _write(folder: Path, files: dict[str, str], encoding: str = "utf-8") -> None:
    for name, text in files.items():
        (folder / name).write_text(text, encoding=encoding)


def _cfg(folder: Path, text: str = CONFIG):
    return parse_config(text, folder / "leadscore.toml")


def test_every_row_is_kept_or_quarantined_with_a_reason(tmp_path):
    _write(tmp_path, {"leads.csv": LEADS, "stages.csv": STAGES, "activities.csv": ACTIVITIES, "campaigns.csv": CAMPAIGNS})
    result = ingest(_cfg(tmp_path))
    for name, c in result.counts.items():
        assert c["rows_in"] == c["kept"] + c["quarantined"], name

    assert result.tables["leads"]["lead_id"].to_pylist() == ["L1", "L2", "L7"]
    reasons = result.reasons()
    assert reasons["leads"] == {
        "missing lead id": 1,
        "unparseable Created Date: not a date": 1,
        "Created Date in the future": 1,
        "non-numeric Employees: many": 1,
        "duplicate lead id (first row kept)": 1,
        "missing Created Date": 1,
    }
    assert reasons["outcomes"] == {
        "outcome for an unknown lead": 1,
        "missing Stage": 1,
        "unparseable Stage Date: yesterday": 1,
        "Stage Date before the lead was created": 1,
        "non-numeric Amount: lots": 1,
    }
    assert reasons["activities"] == {
        "activity for an unknown lead": 1,
        "missing Type": 1,
        "unparseable When: someday": 1,
    }
    assert reasons["campaigns"] == {"non-numeric Cost: ten": 1, "duplicate campaign (first row kept)": 1}

    # Values are parsed: thousands separators, offsets to UTC.
    leads = result.tables["leads"].to_pandas().set_index("lead_id")
    assert leads.loc["L2", "export:Employees"] == 1200
    assert str(leads.loc["L7", "created_at"]) == "2025-02-01 06:00:00+00:00"
    assert str(result.tables["leads"].schema.field("created_at").type) == "timestamp[us, tz=UTC]"

    written = write_quarantine(result, tmp_path / "q")
    text = written["leads"].read_text()
    assert text.splitlines()[0].startswith('"source_row","Lead ID"')
    assert "not a date" in text and text.count("\n") == 7


def test_latin1_semicolon_and_bom_tab_are_detected(tmp_path):
    leads = LEADS.splitlines()[:3]
    leads[1] = leads[1].replace("US", "España")
    _write(tmp_path, {"leads.csv": "\n".join(l.replace(",", ";") for l in [leads[0], leads[1]]).replace(';"1;200"', "") + "\n"},
           encoding="latin-1")
    (tmp_path / "stages.csv").write_bytes("\ufeffLead ID\tStage\tStage Date\tAmount\nL1\tClosed Won\t2025-02-01\t\n".encode())
    cfg_text = CONFIG.split("[data.activities]")[0] + "[label]\nwon_stages = [\"Closed Won\"]\n"
    result = ingest(_cfg(tmp_path, cfg_text))
    assert result.tables["leads"].to_pandas().loc[0, "export:Country"] == "España"
    assert result.tables["outcomes"].num_rows == 1


def test_parquet_export(tmp_path):
    pq.write_table(pa.table({"Lead ID": ["A", "B"], "Created Date": pa.array([1_700_000_000, 1_700_086_400], pa.timestamp("s")),
                             "Campaign": ["X", None], "Country": ["US", "US"], "Employees": [10, None], "Owner": ["a", "b"]}),
                   tmp_path / "leads.parquet")
    _write(tmp_path, {"stages.csv": "Lead ID,Stage,Stage Date,Amount\nA,Closed Won,2023-12-01,10\n"})
    cfg_text = CONFIG.replace('path = "leads.csv"', 'path = "leads.parquet"').split("[data.activities]")[0]
    result = ingest(_cfg(tmp_path, cfg_text + "[label]\nwon_stages = [\"Closed Won\"]\n"))
    assert result.counts["leads"] == {"rows_in": 2, "kept": 2, "quarantined": 0}
    assert result.tables["leads"]["export:Employees"].to_pylist() == [10.0, None]


def test_missing_column_names_the_key_and_suggests(tmp_path):
    _write(tmp_path, {"leads.csv": LEADS.replace("Employees", "Employes"), "stages.csv": STAGES,
                      "activities.csv": ACTIVITIES, "campaigns.csv": CAMPAIGNS})
    with pytest.raises(DataError, match=r"data\.leads\.numeric\[0\]: column 'Employees' not found.*did you mean 'Employes'"):
        ingest(_cfg(tmp_path))


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(DataError, match=r"data\.leads\.path: file .*leads\.csv not found"):
        ingest(_cfg(tmp_path))


def test_unknown_stage_is_quarantined_when_stages_are_listed(tmp_path):
    _write(tmp_path, {"leads.csv": LEADS, "stages.csv": STAGES + "L1,Negotiation,2025-01-20 00:00:00,\n",
                      "activities.csv": ACTIVITIES, "campaigns.csv": CAMPAIGNS})
    text = CONFIG.replace('won_stages = ["Closed Won"]', 'won_stages = ["Closed Won"]\nlost_stages = ["Closed Lost"]\n'
                                                          'other_stages = ["Qualified"]')
    reasons = ingest(_cfg(tmp_path, text)).reasons()["outcomes"]
    assert reasons["unknown Stage: Negotiation"] == 1


def test_a_stage_spelled_several_ways_is_one_stage(tmp_path, caplog):
    """Case, spaces, hyphens and underscores do not make another stage: a win typed "closed-won" is a win, and
    the stages outside the config take the spelling the file used first (not the commonest: that one may change
    as the export grows). The log and the manifest say what was read as what; a stage outside every list is
    still quarantined when other_stages is given."""
    stages = """Lead ID,Stage,Stage Date,Amount
L1,closed-won,2025-02-01 00:00:00,
L2,CLOSED  WON,2025-02-01 00:00:00,
L7,Closed_Won,2025-03-01 00:00:00,
L1,qualified-to-buy,2025-01-05 00:00:00,
L2,Qualified To Buy,2025-01-10 00:00:00,
L7,Qualified To Buy,2025-02-10 00:00:00,
L2,Closed Lost,2025-02-02 00:00:00,
L7,Negotiation,2025-02-11 00:00:00,
"""
    _write(tmp_path, {"leads.csv": LEADS, "stages.csv": stages, "activities.csv": ACTIVITIES,
                      "campaigns.csv": CAMPAIGNS})
    caplog.set_level("WARNING", logger="leadscore")
    result = ingest(_cfg(tmp_path))
    assert result.tables["outcomes"]["stage"].to_pylist() == [
        "Closed Won", "Closed Won", "Closed Won", "qualified-to-buy", "qualified-to-buy", "qualified-to-buy",
        "Closed Lost", "Negotiation"]
    assert result.files["outcomes"]["stage_spellings"] == {
        "Closed Won": ["CLOSED  WON", "Closed_Won", "closed-won"], "qualified-to-buy": ["Qualified To Buy"]}
    assert "'closed-won' read as 'Closed Won'" in caplog.text

    lists = 'won_stages = ["Closed Won"]\nlost_stages = ["closed lost"]\nother_stages = ["qualified to buy"]'
    listed = CONFIG.replace('won_stages = ["Closed Won"]', lists)
    result = ingest(_cfg(tmp_path, listed))
    assert result.tables["outcomes"]["stage"].to_pylist() == ["Closed Won"] * 3 + ["qualified to buy"] * 3 + [
        "closed lost"]
    assert result.reasons()["outcomes"] == {"unknown Stage: Negotiation": 1}


def test_stages_listed_as_both_won_and_lost_are_refused_in_any_spelling(tmp_path):
    from leadscore.errors import ConfigError

    with pytest.raises(ConfigError, match=r"label.*\['Closed Won'\] are listed as both won and lost"):
        _cfg(tmp_path, CONFIG.replace('won_stages = ["Closed Won"]',
                                      'won_stages = ["Closed Won"]\nlost_stages = ["closed-won"]'))


def test_too_much_quarantine_fails_the_step_and_says_where(tmp_path):
    from flows.steps import ingest_step

    _write(tmp_path, {"leads.csv": LEADS, "stages.csv": STAGES, "activities.csv": ACTIVITIES, "campaigns.csv": CAMPAIGNS})
    cfg = _cfg(tmp_path, 'home = "home"\n' + CONFIG)
    with pytest.raises(DataError, match=r"more than data.max_quarantine_share = 5.0%; see .*quarantine.*run-1") as info:
        ingest_step(cfg, "run-1")
    assert info.value.exit_code == 2
    assert (tmp_path / "home" / "quarantine" / "run-1" / "leads.csv").is_file()
    # With a looser limit the same export passes and the canonical tables are written.
    loose = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_quarantine_share": 0.9})})
    summary = ingest_step(loose, "run-2")
    assert summary["counts"]["leads"] == {"rows_in": 9, "kept": 3, "quarantined": 6}


def test_a_leads_file_with_a_header_only_says_so(tmp_path):
    from flows.steps import ingest_step

    _write(tmp_path, {"leads.csv": LEADS.splitlines()[0] + "\n", "stages.csv": STAGES, "activities.csv": ACTIVITIES,
                      "campaigns.csv": CAMPAIGNS})
    with pytest.raises(DataError, match=r"^data\.leads: .*leads\.csv has no rows$"):
        ingest_step(_cfg(tmp_path, 'home = "home"\n' + CONFIG), "run-1")


def test_ids_that_differ_in_leading_zeros_are_named_in_the_error(tmp_path):
    """Leads written with zero-padded ids and stages with the same ids as numbers share no id: the run stops on
    the quarantined share, and the message says why rather than only "unknown lead"."""
    from flows.steps import ingest_step

    leads = "Lead ID,Created Date,Campaign,Country,Employees,Owner\n" + "".join(
        f"{i:06d},2025-01-0{1 + i % 5} 10:00:00,Spring,US,10,Ann\n" for i in range(1, 41))
    stages = "Lead ID,Stage,Stage Date,Amount\n" + "".join(
        f"{i},Closed Won,2025-02-01 00:00:00,\n" for i in range(1, 41))
    _write(tmp_path, {"leads.csv": leads, "stages.csv": stages, "activities.csv": "Lead ID,Type,When\n",
                      "campaigns.csv": CAMPAIGNS})
    cfg = _cfg(tmp_path, 'home = "home"\n' + CONFIG)
    with pytest.raises(DataError, match=r"data.outcomes.lead_id and data.leads.id differ in leading zeros "
                                        r"\('1' against '000001'\)"):
        ingest_step(cfg, "run-1")


def test_outcome_dates_in_the_leads_file_are_stage_changes(tmp_path):
    """A deals export with no stage history: a date in won_time is a win then, in lost_time a loss, an empty cell is
    no outcome yet. A date that cannot be read, or comes a day or more before the lead, quarantines the lead:
    kept, it would look open. A date without a time on the lead's first day is a win when the lead arrived."""
    _write(tmp_path, {"deals.csv": "id,add_time,won_time,lost_time,value\n"
                                   "D1,2025-01-01 10:00:00,2025-02-01 10:00:00,,100\n"
                                   "D2,2025-01-02 10:00:00,,2025-01-20 09:00:00,50\n"
                                   "D3,2025-01-03 10:00:00,,,70\n"
                                   "D4,2025-01-04 10:00:00,soon,,70\n"
                                   "D5,2025-01-05 10:00:00,2025-01-04 10:00:00,,70\n"
                                   "D6,2025-01-06 10:00:00,2025-01-06,,70\n"})
    cfg = _cfg(tmp_path, '[data.leads]\npath = "deals.csv"\nid = "id"\ncreated_at = "add_time"\nwon_at = "won_time"\n'
                         'lost_at = "lost_time"\nnumeric = ["value"]\n')
    assert cfg.won_stages == ("won_time",) and cfg.lost_stages == ("lost_time",)
    result = ingest(cfg)
    assert result.tables["leads"]["lead_id"].to_pylist() == ["D1", "D2", "D3", "D6"]
    assert result.tables["leads"].column_names == ["lead_id", "created_at", "campaign", "source", "account",
                                                   "export:value"]
    assert result.reasons()["leads"] == {"unparseable won_time: soon": 1, "won_time before add_time": 1}
    outcomes = result.tables["outcomes"].to_pandas()
    assert outcomes[["lead_id", "stage"]].values.tolist() == [["D1", "won_time"], ["D6", "won_time"],
                                                              ["D2", "lost_time"]]
    assert outcomes["occurred_at"].astype(str).tolist() == ["2025-02-01 10:00:00+00:00", "2025-01-06 10:00:00+00:00",
                                                            "2025-01-20 09:00:00+00:00"]
    assert result.files["leads"]["outcomes_from_columns"] == {"won_time": 2, "lost_time": 1}
    assert "outcomes" not in result.counts  # no outcomes file: its rows are the leads' rows, counted there


@pytest.mark.parametrize("extra, said", [
    ('lost_at = "lost_time"\n', "data.leads.lost_at: needs data.leads.won_at"),
    ("", "data.outcomes: is required (or set data.leads.won_at"),
    ('won_at = "Closed Won"\n[data.outcomes]\npath = "s.csv"\nlead_id = "id"\nstage = "s"\noccurred_at = "t"\n'
     '[label]\nwon_stages = ["closed-won"]\n', "data.leads.won_at: 'Closed Won' is also the stage 'closed-won'")])
def test_outcome_date_columns_are_checked_at_start(tmp_path, extra, said):
    from leadscore.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        _cfg(tmp_path, f'[data.leads]\npath = "deals.csv"\nid = "id"\ncreated_at = "add_time"\n{extra}')
    assert said in str(error.value)


def test_lost_dates_in_the_leads_file_beside_a_stage_history_of_wins(tmp_path):
    cfg = _cfg(tmp_path, '[data.leads]\npath = "deals.csv"\nid = "id"\ncreated_at = "add_time"\nlost_at = "lost_time"\n'
                   '[data.outcomes]\npath = "s.csv"\nlead_id = "id"\nstage = "s"\noccurred_at = "t"\n'
                   '[label]\nwon_stages = ["Won"]\n')
    assert (cfg.won_stages, cfg.lost_stages) == (("Won",), ("lost_time",))
