"""Binary classification metrics (malignant = positive), shared by training, evaluation, drift and benchmarks."""

from __future__ import annotations

import math

import numpy as np

from edge_sca.policy import TARGET_SENSITIVITY


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum statistic (ties counted half); NaN with one class only."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(labels: np.ndarray, p_malignant: np.ndarray, threshold: float) -> dict:
    """Accuracy, balanced accuracy, sensitivity, specificity, PPV, NPV, AUROC and the confusion matrix."""
    y = np.asarray(labels).astype(int)
    pred = (np.asarray(p_malignant) >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    sens, spec = _safe_div(tp, tp + fn), _safe_div(tn, tn + fp)
    return {
        "n": int(len(y)),
        "threshold": float(threshold),
        "accuracy": _safe_div(tp + tn, len(y)),
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _safe_div(tp, tp + fp),
        "npv": _safe_div(tn, tn + fn),
        "auroc": auroc(y, p_malignant),
        # rows = true [benign, malignant], columns = predicted [benign, malignant]
        "confusion": [[tn, fp], [fn, tp]],
    }


def threshold_for_sensitivity(labels: np.ndarray, p_malignant: np.ndarray,
                              target: float = TARGET_SENSITIVITY) -> float:
    """The highest threshold whose malignant sensitivity is at least `target` (most specific such threshold)."""
    y = np.asarray(labels).astype(bool)
    pos = np.sort(np.asarray(p_malignant, dtype=np.float64)[y])[::-1]
    if len(pos) == 0:
        raise ValueError("no malignant examples: cannot choose a threshold for sensitivity")
    k = int(np.ceil(target * len(pos)))  # need at least k positives at or above the threshold
    return float(pos[max(k, 1) - 1])


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default): sound at small n and at 0% or 100%."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
