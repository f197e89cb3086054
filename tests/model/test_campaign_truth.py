"""Campaign expected closes against the generator's true probabilities."""

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest

from reports.campaign_quality import quality_table

pytestmark = pytest.mark.slow


def test_generator_expected_closes_match_true_probabilities(demo_scale):
    """Expected closes per campaign against the sum of the true probabilities, for campaigns with at least 500
    leads, at the demo's size (issue 15's acceptance at 200,000 leads is in test_from_now).

    Matured leads count their outcome, which scatters around the truth by about sqrt(sum p(1-p)) closes; for a
    600-lead campaign that alone is ~8 %. Mostly matured: most (>= 75 %) within 10 %, each within 20 % or 3
    standard deviations. Mostly young, where early wins against their exposure are all there is to go on:
    median error at most 25 %, none off by 2x."""
    cfg, as_of, scored = demo_scale
    truth = pacsv.read_csv(cfg.evaluation.truth_path).to_pandas()[["Lead ID", "true_probability"]]
    table = quality_table(scored, "campaign", None, pd.Timestamp(as_of), cfg.label.horizon_days).set_index("campaign")
    with_truth = scored.merge(truth, left_on="lead_id", right_on="Lead ID")
    true_p = with_truth.groupby("campaign")["true_probability"]
    true_sum = true_p.sum()
    noise = with_truth.assign(v=lambda d: d["true_probability"] * (1 - d["true_probability"])).groupby("campaign")["v"].sum() ** 0.5
    big = table[table["leads"] >= 500]
    young = big[big["matured_share"] < 0.5].index
    ratio = big.loc[young, "expected_closes"] / true_sum.loc[young]
    assert len(young) >= 4 and (ratio - 1).abs().median() <= 0.25 and ratio.between(0.5, 2).all(), ratio
    judged = big[big["matured_share"] >= 0.5].index
    assert len(judged) >= 25
    gap = (table.loc[judged, "expected_closes"] - true_sum.loc[judged]).abs()
    relative = gap / true_sum.loc[judged]
    assert (relative <= 0.10).mean() >= 0.75, relative.sort_values().tail()
    assert (gap <= np.maximum(0.20 * true_sum.loc[judged], 3 * noise.loc[judged])).all(), relative.sort_values().tail()
    # Totals add up to the scored leads; actual closes count matured leads only.
    assert table["leads"].sum() == len(scored)
    assert table["actual_closes"].sum() == scored.loc[scored["mature"], "label"].sum()
    assert table["open_leads"].sum() == scored["is_open"].sum()
    new = table[table["matured_leads"] == 0]
    assert len(new) and new["actual_closes"].isna().all() and new["early_read"].notna().all()
