import numpy as np
import pyarrow.compute as pc

from ingest.synthetic import (
    END,
    HORIZON_DAYS,
    MIN_WIN_LAG_DAYS,
    generate_crm,
    write_crm,
)


def test_same_seed_gives_identical_files(tmp_path):
    write_crm(generate_crm(2_000, seed=5), tmp_path / "a")
    write_crm(generate_crm(2_000, seed=5), tmp_path / "b")
    write_crm(generate_crm(2_000, seed=6), tmp_path / "c")
    for name in ("leads.csv", "activities.csv", "opportunities.csv", "campaigns.csv", "truth.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "leads.csv").read_bytes() != (tmp_path / "c" / "leads.csv").read_bytes()


def test_shape_and_columns():
    crm = generate_crm(3_000, seed=1)
    assert crm.leads.num_rows == 3_000
    assert crm.leads.column_names[:3] == ["Lead ID", "Created Date", "Campaign"]
    assert pc.count_distinct(crm.leads["Lead ID"]).as_py() == 3_000
    # Accounts are shared by several leads; campaigns have many leads each.
    assert pc.count_distinct(crm.leads["Company"]).as_py() < 3_000 * 0.6
    assert crm.campaigns.num_rows >= 12
    assert set(crm.activities["Activity Type"].unique().to_pylist()) == {"Web Visit", "Email Open", "Email Click", "Demo Request"}
    assert {"Closed Won", "Closed Lost", "Qualified"} <= set(crm.opportunities["Stage"].unique().to_pylist())
    # The truth is in its own table only.
    assert "true_probability" not in crm.leads.column_names


def test_nothing_after_the_export_date_and_wins_follow_the_rules():
    crm = generate_crm(5_000, seed=2)
    end = END.astype("datetime64[us]")
    for table, col in ((crm.leads, "Created Date"), (crm.activities, "Activity Date"), (crm.opportunities, "Stage Date")):
        assert table[col].to_numpy().max() < end
    opp = crm.opportunities.to_pandas()
    leads = crm.leads.to_pandas().set_index("Lead ID")
    wins = opp[opp["Stage"] == "Closed Won"].drop_duplicates("Lead ID")
    lag_days = (wins["Stage Date"].to_numpy() - leads.loc[wins["Lead ID"], "Created Date"].to_numpy()) / np.timedelta64(1, "D")
    assert lag_days.min() >= MIN_WIN_LAG_DAYS
    truth = crm.truth.to_pandas().set_index("Lead ID")
    in_horizon = wins[lag_days < HORIZON_DAYS]["Lead ID"]
    assert truth.loc[in_horizon, "won_within_horizon"].all()
    # The realised win rate matches the true probabilities on average.
    assert abs(truth["won_within_horizon"].mean() - truth["true_probability"].mean()) < 0.02
