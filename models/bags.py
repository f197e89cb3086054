"""Boosters that do not churn on noise: the training rows split into bags by a hash of the lead id, one booster
per bag, their trees merged into one LightGBM model that predicts the mean of their log-odds.

A booster's split choices are chaotic: one more training row can flip an early split and every tree after it,
moving a few leads' probabilities by 0.2 or more. A lead's bag depends on its id alone, so new rows change only
the training rows of their own bags, and each booster carries 1/k of the score. (Every booster is still early-stopped
on the same validation rows, so a change there can change its number of trees.) The merged model is a plain
``lightgbm.Booster``: prediction, leaf indices, tree dumps and importances work as for any other."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Each booster learns from its bag alone. The model of a win from now on lost 5 % of its log loss to 8 bags of
# 5,000 training rows (200,000 generator leads), 0.6-2.3 % to 8 bags of 85,000 (200,000 and 1,000,000 leads): an
# export too small for bags of this many rows trains fewer.
MIN_BAG_ROWS = 25_000


def bag_count(rows: int, bags: int) -> int:
    """``bags`` (``train.bags``), or fewer so that each bag has at least ``MIN_BAG_ROWS`` training rows."""
    return max(1, min(bags, rows // MIN_BAG_ROWS))


def bag_of(lead_id: pd.Series, bags: int) -> np.ndarray:
    """Each row's bag (0 .. bags - 1), from its lead id alone: every row of a lead is in one bag, whatever else
    the export holds."""
    if bags == 1:
        return np.zeros(len(lead_id), np.int64)
    hashed = pd.util.hash_pandas_object(lead_id.astype("string"), index=False).to_numpy()
    return (hashed % np.uint64(bags)).astype(np.int64)


def bag_rows(frame: pd.DataFrame, bags: int) -> list[slice | np.ndarray]:
    """Each bag's row positions in ``frame`` (by its ``lead_id``); with one bag, every row as ``slice(None)``,
    which indexes without a copy."""
    if bags == 1:
        return [slice(None)]
    bag = bag_of(frame["lead_id"], bags)
    return [np.flatnonzero(bag == b) for b in range(bags)]


def averaged(boosters: list):
    """One booster whose raw score is the mean of ``boosters``' raw scores: their trees in order, each leaf's
    value divided by their number. They must share features and objective (one encoder, one set of parameters)."""
    import lightgbm as lgb

    if len(boosters) == 1:
        return boosters[0]
    k = len(boosters)
    texts = [b.model_to_string() for b in boosters]
    # What lies outside the trees (feature names and ranges, objective, categories) is the first booster's: the
    # members must agree on it, and a linear tree's leaves would need more than a division.
    for key in ("feature_names=", "objective=", "max_feature_idx=", "pandas_categorical:"):
        if len({next((line for line in t.split("\n") if line.startswith(key)), None) for t in texts}) > 1:
            raise ValueError(f"boosters to average differ in {key.rstrip('=:')}")
    if any("\nis_linear=1" in t for t in texts):
        raise ValueError("boosters with linear trees cannot be averaged by their leaves")
    # The header (minus the byte sizes of the first model's trees) and the footer come from the first model.
    head = texts[0][:texts[0].index("\nTree=")].split("\n")
    head = "\n".join(line for line in head if not line.startswith("tree_sizes=")).rstrip("\n")
    tail = texts[0][texts[0].index("end of trees"):]
    trees = [block.strip("\n") for text in texts
             for block in text[text.index("\nTree=") + 1:text.index("end of trees")].split("\n\n\n") if block.strip()]
    out = []
    for i, block in enumerate(trees):
        lines = block.split("\n")
        lines[0] = f"Tree={i}"
        for j, line in enumerate(lines):
            key, _, values = line.partition("=")
            if key in ("leaf_value", "internal_value"):
                lines[j] = f"{key}=" + " ".join(repr(float(v) / k) for v in values.split())
        out.append("\n".join(lines))
    return lgb.Booster(model_str=head + "\n\n" + "\n\n\n".join(out) + "\n\n\n" + tail)
