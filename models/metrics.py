"""Metrics on probabilities (never on hard 0/1 predictions)."""

from __future__ import annotations

import numpy as np


def _bins(p: np.ndarray, w: np.ndarray, bins: int) -> list[np.ndarray]:
    """Rows in ``bins`` groups of equal weight, by probability."""
    order = np.argsort(p, kind="stable")
    edges = np.searchsorted(np.cumsum(w[order]), np.linspace(0, w.sum(), bins + 1)[1:-1], side="right")
    return [g for g in np.split(order, edges) if len(g)]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10, weight: np.ndarray | None = None) -> float:
    """ECE over equal-frequency bins: the mean |observed rate - mean probability|, weighted by bin size
    (``weight``: what each row stands for, e.g. a sampled landmark row)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, np.float64)
    total = w.sum()
    return float(sum(w[g].sum() / total * abs(np.average(y[g], weights=w[g]) - np.average(p[g], weights=w[g]))
                     for g in _bins(p, w, bins)))


def ece_noise_floor(p: np.ndarray, bins: int = 10, weight: np.ndarray | None = None) -> float:
    """The ECE a perfectly calibrated model would show on these leads by chance alone (its expected value, from
    the normal approximation of each bin's win count). On a few thousand test leads it is about 0.01-0.02."""
    p = np.asarray(p, np.float64)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, np.float64)
    variance = [float(np.sum(w[g] ** 2 * p[g] * (1 - p[g]))) for g in _bins(p, w, bins)]
    return float(np.sqrt(2 / np.pi) * np.sum(np.sqrt(variance)) / w.sum())


def classification_metrics(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None) -> dict[str, float]:
    """``weight``: what each row stands for (sampled landmark rows); None: every row counts once."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both wins and non-wins among the evaluated leads")
    order = np.argsort(-p, kind="stable")
    top = order[: max(1, np.searchsorted(np.cumsum(w[order]), w.sum() / 10) + 1)]
    base = float(np.average(y, weights=w))
    return {
        "roc_auc": float(roc_auc_score(y, p, sample_weight=weight)),
        "pr_auc": float(average_precision_score(y, p, sample_weight=weight)),
        "log_loss": float(log_loss(y, p, labels=[0, 1], sample_weight=weight)),
        "brier": float(brier_score_loss(y, p, sample_weight=weight)),
        "ece": expected_calibration_error(y, p, weight=weight),
        "ece_noise": ece_noise_floor(p, weight=weight),
        "lift_top_decile": float(np.average(y[top], weights=w[top]) / base),
        "base_rate": base,
        "calibration_in_the_large": float(np.average(p, weights=w) / base - 1),
    }


def truth_metrics(label: np.ndarray, p: np.ndarray, true_p: np.ndarray) -> dict[str, float]:
    """Compare with known true probabilities (synthetic data): the best ROC AUC any model could reach on these
    leads, and how far the model's probabilities are from the truth."""
    from sklearn.metrics import roc_auc_score

    return {
        "roc_auc_truth": float(roc_auc_score(label, true_p)),
        "mean_abs_error_truth": float(np.mean(np.abs(p - true_p))),
    }


def against_truth(test_frame, truth, truth_id: str, truth_probability: str) -> dict[str, float]:
    """Truth metrics of the test leads (``lead_id``, ``label``, ``probability``) against a truth table (synthetic
    data only); every test lead must have a row."""
    from leadscore.errors import DataError

    joined = test_frame.merge(truth, left_on="lead_id", right_on=truth_id, how="inner")
    if len(joined) < len(test_frame):
        raise DataError(f"evaluation.truth_path: {len(test_frame) - len(joined)} test leads have no row in the truth file")
    return truth_metrics(joined["label"].to_numpy(), joined["probability"].to_numpy(),
                         joined[truth_probability].to_numpy())


def auc_difference_se(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> float:
    """Standard error of ROC AUC(a) - AUC(b) on the same leads (DeLong et al. 1988): how far apart two models'
    AUCs on these test leads can be by chance."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        return float("inf")
    v01, v10 = [], []
    for p in (np.asarray(p_a, np.float64), np.asarray(p_b, np.float64)):
        everyone = rankdata(p)
        v01.append((everyone[y] - rankdata(p[y])) / n)  # per win: the share of losses it outranks
        v10.append(1 - (everyone[~y] - rankdata(p[~y])) / m)  # per loss: the share of wins that outrank it
    s01, s10 = np.cov(np.vstack(v01)), np.cov(np.vstack(v10))
    var = (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / m + (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / n
    return float(np.sqrt(max(var, 0.0)))
