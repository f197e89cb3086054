"""Metrics on probabilities (never on hard 0/1 predictions)."""

from __future__ import annotations

import numpy as np


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-frequency bins: the mean |observed rate - mean probability|, weighted by bin size."""
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    n = len(p)
    return float(sum(len(g) / n * abs(y[g].mean() - p[g].mean()) for g in groups if len(g)))


def ece_noise_floor(p: np.ndarray, bins: int = 10) -> float:
    """The ECE a perfectly calibrated model would show on these leads by chance alone (its expected value, from
    the normal approximation of each bin's win count). On a few thousand test leads it is about 0.01-0.02."""
    order = np.argsort(p, kind="stable")
    variance = [float(np.sum(p[g] * (1 - p[g]))) for g in np.array_split(order, bins) if len(g)]
    return float(np.sqrt(2 / np.pi) * np.sum(np.sqrt(variance)) / len(p))


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both wins and non-wins among the evaluated leads")
    top = np.argsort(-p, kind="stable")[: max(1, len(p) // 10)]
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "ece_noise": ece_noise_floor(p),
        "lift_top_decile": float(y[top].mean() / y.mean()),
        "base_rate": float(y.mean()),
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
