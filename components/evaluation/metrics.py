"""Numpy-in, numpy-out evaluation metrics."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class absent from y_true)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum statistic (ties count half); None if one class is absent."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall(is_positive: np.ndarray, flagged: np.ndarray) -> tuple[float | None, float | None]:
    """Precision and recall of a boolean flag against the truth (None where undefined)."""
    is_positive, flagged = np.asarray(is_positive, bool), np.asarray(flagged, bool)
    hits = int((is_positive & flagged).sum())
    precision = hits / int(flagged.sum()) if flagged.any() else None
    recall = hits / int(is_positive.sum()) if is_positive.any() else None
    return precision, recall


def detection_metrics(is_noisy: np.ndarray, p_wrong: np.ndarray, *, threshold: float,
                      known: np.ndarray | None = None) -> dict[str, float | None]:
    """AUC, precision and recall of noise scores against the noisy mask, over the rows whose truth is `known`
    (default all); the flagged fraction is over every row."""
    truth, scores = (is_noisy, p_wrong) if known is None else (is_noisy[known], p_wrong[known])
    precision, recall = precision_recall(truth, scores > threshold)
    return {"auc": roc_auc(truth, scores), "precision": precision, "recall": recall,
            "flagged_fraction": float(np.mean(p_wrong > threshold))}
