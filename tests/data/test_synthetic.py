import numpy as np
import pyarrow.compute as pc

from ingest.synthetic import (
    DRIFT_PER_YEAR,
    END,
    HORIZON_DAYS,
    MIN_WIN_LAG_DAYS,
    future_win_probability,
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
    assert set(crm.activities["Activity Type"].unique().to_pylist()) == {"Web Visit", "Email Open", "Email Click",
                                                                        "Demo Request", "Call"}
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


def test_the_generator_holds_what_real_exports_hold():
    """Drift, young campaigns, most losers never closed, engagement before wins, and a future the truth knows."""
    crm = generate_crm(60_000, seed=4)
    leads, truth = crm.leads.to_pandas(), crm.truth.to_pandas()
    end = END.astype("datetime64[s]")
    created = leads["Created Date"].to_numpy().astype("datetime64[s]")
    years = (created - created.min()) / np.timedelta64(365, "D")
    # The base rate drifts: logit(true p) against time, with the campaign, the season and the account's earlier
    # wins held fixed (accounts that won before raise later leads' chances, which hides the drift in raw rates).
    p = np.minimum(truth["true_probability"].to_numpy(), 0.99 * 0.85 - 1e-9)  # leads at the cap carry no slope
    keep = truth["buy_probability"].to_numpy() < 0.99
    logit = np.log(p / (1 - p))[keep]
    campaigns = (leads["Campaign"].to_numpy()[:, None] == np.unique(leads["Campaign"])[None, :]).astype(float)
    design = np.column_stack([years, np.sin(2 * np.pi * years), np.cos(2 * np.pi * years),
                              np.log1p(truth["account_wins_before"].to_numpy()), campaigns])[keep]
    slope = np.linalg.lstsq(design, logit, rcond=None)[0][0]
    assert abs(slope - DRIFT_PER_YEAR) < 0.1, slope
    # Several campaigns started in the last months before the export.
    first = leads.groupby("Campaign")["Created Date"].min().to_numpy().astype("datetime64[s]")
    assert ((end - first) < np.timedelta64(100, "D")).sum() >= 3
    # Most leads that never buy are never closed; some that are lost are lost long after arrival.
    won = truth["won_at"].to_numpy().astype("datetime64[s]")
    lost = truth["lost_at"].to_numpy().astype("datetime64[s]")
    never_won = np.isnat(won)
    old = (end - created) > np.timedelta64(400, "D")
    assert (~np.isnat(lost[never_won & old])).mean() < 0.35
    assert ((lost[~np.isnat(lost)] - created[~np.isnat(lost)]) > np.timedelta64(180, "D")).mean() > 0.3
    # Buyers ask for a demo or talk to sales in the weeks before the win; those who never buy rarely do.
    acts = crm.activities.to_pandas()
    signals = acts[acts["Activity Type"].isin(["Demo Request", "Call"])]
    when_won = dict(zip(leads["Lead ID"], won))
    lead_won = signals["Lead ID"].map(when_won).to_numpy().astype("datetime64[s]")
    at = signals["Activity Date"].to_numpy().astype("datetime64[s]")
    before_win = ~np.isnat(lead_won) & (at < lead_won) & (at >= lead_won - np.timedelta64(21, "D"))
    buyers_seen = ~np.isnat(won) & (won < end)
    assert len(set(signals["Lead ID"][before_win])) / buyers_seen.sum() > 0.7
    assert signals["Lead ID"].isin(leads["Lead ID"][never_won]).sum() / never_won.sum() < 0.3
    # The truth knows the future: wins after the export date. Among leads open at the export, the reference
    # from fit and age alone predicts the next horizon's wins on average.
    assert (won[~np.isnat(won)] >= end).sum() > 100
    open_ = (np.isnat(won) | (won >= end)) & (np.isnat(lost) | (lost >= end))
    future = ~np.isnat(won) & (won >= end) & (won < end + np.timedelta64(HORIZON_DAYS, "D"))
    age = (end - created) / np.timedelta64(1, "D")
    reference = future_win_probability(truth["buy_probability"].to_numpy()[open_], age[open_])
    assert abs(reference.mean() / future[open_].mean() - 1) < 0.1
