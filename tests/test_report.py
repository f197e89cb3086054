"""Campaign quality: sums that add up, actual closes from matured leads only."""

import numpy as np
import pandas as pd

from serving.campaign_report import QUALITY_COLUMNS, quality_table, render_html


def _scored():
    return pd.DataFrame({
        "campaign": ["A", "A", "A", "B", "B", "New"],
        "source": ["Web"] * 6,
        "probability": [0.5, 0.2, 0.1, 0.3, 0.3, 0.6],
        "tier": ["A", "C", "D", "B", "B", "A"],
        "mature": [True, True, False, True, False, False],
        "label": [1, 0, np.nan, 1, np.nan, np.nan],
        "is_open": [False, True, True, False, True, True],
    })


def test_quality_table_adds_up():
    costs = pd.DataFrame({"campaign": ["A", "B"], "cost": [80.0, 60.0]})
    t = quality_table(_scored(), "campaign", costs).set_index("campaign")
    assert list(t.columns) == QUALITY_COLUMNS
    assert t.loc["A", "leads"] == 3 and t.loc["A", "matured_leads"] == 2 and t.loc["A", "open_leads"] == 2
    assert t.loc["A", "expected_closes"] == 0.8
    assert t.loc["A", "actual_closes"] == 1
    assert t.loc["A", "cost_per_expected_close"] == 100.0
    assert t.loc["B", "cost_per_expected_close"] == 100.0
    # The interval holds the expected value; a campaign with no matured leads has no actual closes yet.
    assert t.loc["A", "expected_closes_low"] < 0.8 < t.loc["A", "expected_closes_high"]
    assert pd.isna(t.loc["New", "actual_closes"]) and pd.isna(t.loc["New", "cost"])
    assert t["leads"].sum() == 6
    assert t["expected_closes"].sum() == _scored()["probability"].sum()


def test_html_is_self_contained_and_has_the_chart():
    t = quality_table(_scored(), "campaign", pd.DataFrame({"campaign": ["A"], "cost": [10.0]}))
    page = render_html(t, quality_table(_scored(), "source"), "Campaign lead quality", "test")
    assert "<svg" in page and page.count('class="bar"') == 1
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
