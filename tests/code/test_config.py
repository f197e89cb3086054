from pathlib import Path

import pytest

from leadscore.config import load_config, parse_config
from leadscore.errors import ConfigError

GOOD = """
[data.leads]
path = "export/leads.csv"
id = "Lead ID"
created_at = "Created Date"
categorical = ["Country"]
numeric = ["Employees"]
[data.outcomes]
path = "export/opportunities.csv"
lead_id = "Lead ID"
stage = "Stage"
occurred_at = "Stage Date"
[label]
won_stages = ["Closed Won"]
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("/cfg/leadscore.toml"))
    return str(info.value)


def test_good_config_resolves_paths_against_its_folder():
    cfg = parse_config(GOOD, Path("/cfg/leadscore.toml"))
    assert cfg.data.leads.path == Path("/cfg/export/leads.csv")
    assert cfg.home == Path("/cfg/.leadscore")
    assert cfg.label.horizon_days == 90
    assert cfg.features.windows_days == (7, 30, 90)


def test_missing_key_is_named():
    msg = _error(GOOD.replace('id = "Lead ID"\n', ""))
    assert "data.leads.id" in msg and "required" in msg


def test_unknown_key_is_named():
    msg = _error(GOOD + "[train]\nlearning_rat = 0.1\n")
    assert "train.learning_rat" in msg and "not a known key" in msg


def test_wrong_type_is_named():
    msg = _error(GOOD.replace('won_stages = ["Closed Won"]', 'won_stages = ["Closed Won"]\nhorizon_days = "ninety"'))
    assert "label.horizon_days" in msg and "ninety" in msg


def test_bad_time_zone_in_data_section():
    text = GOOD.replace("[data.leads]", '[data]\ntimezone = "Mars/Olympus"\n\n[data.leads]')
    msg = _error(text)
    assert "data.timezone" in msg and "Mars/Olympus" in msg


def test_column_mapped_twice_is_named():
    msg = _error(GOOD.replace('categorical = ["Country"]', 'categorical = ["Created Date"]'))
    assert "data.leads" in msg and "Created Date" in msg


def test_tier_shares_are_checked():
    msg = _error(GOOD + "[scoring]\ntier_shares = [0.5, 0.4, 0.3]\n")
    assert "scoring.tier_shares" in msg


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[data\n", tmp_path / "x.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_digest_changes_with_settings():
    a = parse_config(GOOD, Path("/cfg/leadscore.toml"))
    b = parse_config(GOOD.replace('["Closed Won"]', '["Won"]'), Path("/cfg/leadscore.toml"))
    assert a.digest() != b.digest()
    assert a.digest() == parse_config(GOOD, Path("/cfg/leadscore.toml")).digest()


def test_crm_write_back_keys_are_checked_and_named():
    cfg = parse_config(GOOD + '[publish]\ncrm = ["hubspot"]\n[publish.hubspot]\nscore = "hs_lead_score"\n',
                       Path("/cfg/leadscore.toml"))
    assert cfg.publish.crm == ("hubspot",) and cfg.publish.hubspot.score == "hs_lead_score"
    assert cfg.publish.salesforce.score == "Lead_Score__c"
    msg = _error(GOOD + '[publish]\ncrm = ["pipedrive"]\n')
    assert "publish.crm[0]" in msg and "salesforce" in msg
    msg = _error(GOOD + '[publish.salesforce]\nscor = "X__c"\n')
    assert "publish.salesforce.scor" in msg
    msg = _error(GOOD + '[publish.salesforce]\ntier = "Lead_Score__c"\n')
    assert "publish.salesforce" in msg and "'Lead_Score__c'" in msg


def test_segment_filters_name_the_key():
    seg = '[[segments]]\nname = "emea"\nwhere = { Country = ["France"] }\n'
    cfg = parse_config(GOOD + seg, Path("/cfg/leadscore.toml"))
    assert cfg.segments[0].name == "emea" and cfg.segments[0].where == {"Country": ("France",)}
    msg = _error(GOOD + seg.replace("Country", "Region"))
    assert "segments[0].where.Region" in msg and "not a mapped lead column" in msg
    msg = _error(GOOD + seg + seg)
    assert "segments[1].name" in msg
    msg = _error(GOOD + seg.replace('"emea"', '"EMEA west"'))
    assert "segments[0].name" in msg


def test_landmarks_must_include_arrival():
    msg = _error(GOOD.replace('won_stages = ["Closed Won"]', 'won_stages = ["Closed Won"]\nlandmarks_days = [7, 30]'))
    assert "label.landmarks_days" in msg and "must include 0" in msg
