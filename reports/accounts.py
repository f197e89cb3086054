"""Accounts as sales teams think of them: which companies are likely to buy, from their open leads' scores.

An account's chance is that at least one of its open leads wins in the horizon, treating the leads' outcomes as
independent given what the model knows of each. Leads of one buying committee move together, so for an account
with many leads this reads high; expected wins (the sum of the probabilities) holds whatever the dependence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["rank", "account", "chance_any_win", "expected_wins", "open_leads", "best_lead_id",
           "best_lead_probability", "best_lead_tier"]


def account_table(scores: pd.DataFrame, account: pd.Series) -> pd.DataFrame:
    """One row per account with open leads, most likely to buy first. ``scores``: published open leads
    (lead_id, probability, tier); ``account``: each row's account (missing: the lead has none and is left out)."""
    frame = pd.DataFrame({"account": account.to_numpy(), "lead_id": scores["lead_id"].to_numpy(),
                          "probability": scores["probability"].to_numpy(np.float64),
                          "tier": scores["tier"].to_numpy()})
    frame = frame[frame["account"].notna()]
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    # log(1 - p) summed per account: the chance that none wins, without a product's underflow
    frame["none"] = np.log1p(-np.clip(frame["probability"].to_numpy(), 0.0, 1.0 - 1e-12))
    groups = frame.groupby("account", sort=False)
    table = pd.DataFrame({"chance_any_win": -np.expm1(groups["none"].sum()),
                          "expected_wins": groups["probability"].sum(), "open_leads": groups.size()})
    best = (frame.sort_values(["probability", "lead_id"], ascending=[False, True], kind="stable")
            .drop_duplicates("account").set_index("account"))
    table["best_lead_id"] = best["lead_id"]
    table["best_lead_probability"] = best["probability"]
    table["best_lead_tier"] = best["tier"]
    table = table.reset_index().sort_values(["chance_any_win", "expected_wins", "account"],
                                            ascending=[False, False, True], kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table["chance_any_win"] = table["chance_any_win"].round(6)
    table["expected_wins"] = table["expected_wins"].round(6)
    return table[COLUMNS].reset_index(drop=True)
