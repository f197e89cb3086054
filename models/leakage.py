"""Leakage guard: a feature that predicts the outcome almost on its own was probably filled in after it.

Two signs, both measured on the training slice only:
- single-feature ROC AUC above ``features.max_single_auc`` (numeric: the raw value, missing as its own
  lowest value, either direction; categorical: an out-of-fold target encoding, so that a many-valued but
  honest column does not look perfect by memorising its own rows);
- outcome-like values: values that are nearly always won (>= 95 %, with at least 20 leads) holding a large
  share of all wins, as a status or a sales note does ("Closed by ...", "Converted").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError

MAX_ROWS = 200_000  # a sample this size pins an AUC to about +-0.002
PURE_RATE = 0.95
PURE_MIN_LEADS = 20
PURE_WIN_SHARE = 0.20
FOLDS = 5


class LeakageError(LeadscoreError):
    """Training stopped: a column looks like it was set after the outcome."""


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(score)) < 2:
        return 0.5
    auc = roc_auc_score(y, score)
    return float(max(auc, 1 - auc))


def _oof_target_encoding(values: pd.Series, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    fold = rng.integers(0, FOLDS, len(y))
    prior = y.mean()
    codes, _ = pd.factorize(values.astype("string").fillna("\x00missing"), use_na_sentinel=False)
    enc = np.empty(len(y))
    n_levels = codes.max() + 1
    for k in range(FOLDS):
        fit = fold != k
        wins = np.bincount(codes[fit], weights=y[fit], minlength=n_levels)
        count = np.bincount(codes[fit], minlength=n_levels)
        rate = (wins + 10 * prior) / (count + 10)
        enc[fold == k] = rate[codes[fold == k]]
    return enc


def _outcome_like(values: pd.Series, y: np.ndarray, w: np.ndarray) -> tuple[float, str | None, float]:
    """Share of wins held by nearly-always-won values, and the biggest such value with its win rate (rows
    weighted by ``w``: sampled rows count for those they stand for)."""
    key = values.astype("string").fillna("(blank)")
    stats = (pd.DataFrame({"k": key.to_numpy(), "y": y * w, "w": w, "one": 1}).groupby("k")
             .agg(sum=("y", "sum"), weight=("w", "sum"), count=("one", "sum")))
    stats["rate"] = stats["sum"] / stats["weight"]
    pure = stats[(stats["count"] >= PURE_MIN_LEADS) & (stats["rate"] >= PURE_RATE)]
    total = y.sum()
    if pure.empty or total == 0:
        return 0.0, None, 0.0
    top = pure.sort_values("sum", ascending=False).iloc[0]
    return float(pure["sum"].sum() / total), str(top.name), float(top["rate"])


def single_feature_report(frame: pd.DataFrame, y: np.ndarray, categorical: list[str], numeric: list[str],
                          seed: int = 0, weight: np.ndarray | None = None) -> pd.DataFrame:
    """One row per feature: its single-feature AUC and how much of the wins its outcome-like values hold.
    ``weight``: rows sampled unevenly (landmark rows) count for the rows they stand for; an AUC needs no
    weights when only one class was sampled."""
    rng = np.random.default_rng(seed)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, np.float64)
    if len(y) > MAX_ROWS:
        pick = np.sort(rng.choice(len(y), MAX_ROWS, replace=False))
        frame, y, w = frame.iloc[pick], y[pick], w[pick]
    y = np.asarray(y, dtype=np.float64)
    rows = []
    for col in categorical:
        share, value, rate = _outcome_like(frame[col], y, w)
        rows.append({"feature": col, "kind": "categorical", "auc": _auc(y, _oof_target_encoding(frame[col], y, rng)),
                     "outcome_like_share": share, "example_value": value, "example_rate": rate})
    for col in numeric:
        x = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        finite = np.isfinite(x)
        x = np.where(finite, x, (x[finite].min() - 1) if finite.any() else 0.0)
        rows.append({"feature": col, "kind": "numeric", "auc": _auc(y, x), "outcome_like_share": 0.0,
                     "example_value": None, "example_rate": 0.0})
    return pd.DataFrame(rows).sort_values("auc", ascending=False, ignore_index=True)


def check_leakage(report: pd.DataFrame, max_single_auc: float, allow: tuple[str, ...],
                  labels: dict[str, str]) -> None:
    """Raise LeakageError naming every suspicious column that is not explicitly allowed."""
    allowed = set(allow)
    problems = []
    for row in report.itertuples():
        name = labels.get(row.feature, row.feature)
        if row.feature in allowed or name in allowed:
            continue
        if row.auc > max_single_auc:
            problems.append(f"{name!r} alone reaches ROC AUC {row.auc:.3f} (limit features.max_single_auc = {max_single_auc})")
        elif row.outcome_like_share >= PURE_WIN_SHARE:
            problems.append(
                f"{name!r} (ROC AUC {row.auc:.3f}) has values that are nearly always won, e.g. {row.example_value!r} "
                f"({row.example_rate:.0%} won), holding {row.outcome_like_share:.0%} of all wins: it looks like a status "
                "set after the outcome"
            )
    if problems:
        raise LeakageError(
            "leakage guard stopped training: " + "; ".join(problems)
            + ". Remove the column from the config, or list it in features.allow_leaky if it is known when a lead arrives."
        )
