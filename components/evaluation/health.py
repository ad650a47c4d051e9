"""How bad are the labels? The confident-learning estimate of the share of wrong labels, from scores alone.

Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 70 (2021), §3:
per-class thresholds t_j = the mean predicted probability of class j over the samples labelled j; the confident
joint C[i, j] counts the samples labelled i whose probability of j reaches t_j (the argmax among the classes
that do); its rows are calibrated to the label counts, so Q = C_cal / n estimates the joint p(given, true), and
its off-diagonal mass is the estimated noise rate (cleanlab's `health_summary` reports the same quantities).
The known noise is never read here: only the given labels and the model's probabilities.
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-6  # a probability equal to its class's threshold counts, whatever the rounding of the mean (as cleanlab)
BOOTSTRAP_WORK = 4e8  # cap on resamples × rows × classes (the interval of a million rows costs seconds, not minutes)


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ValueError(f"probs must be (n, classes) and labels (n,); got {probs.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in 0 .. {probs.shape[1] - 1}")
    return probs, labels


def class_thresholds(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """t_j = mean of p(j | x) over the samples labelled j (weighted: a bootstrap's counts); a class that nobody
    is labelled gets +inf (nothing is confidently in it)."""
    probs, labels = _check(probs, labels)
    k = probs.shape[1]
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    mass = np.bincount(labels, weights=w, minlength=k)
    own = np.bincount(labels, weights=w * probs[np.arange(len(labels)), labels], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, own / mass, np.inf)


def confident_joint(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """C[i, j]: (weighted) count of samples labelled i whose most probable class among those at or above their
    threshold is j; samples below every threshold are not counted (the paper's C, before calibration)."""
    probs, labels = _check(probs, labels)
    k = probs.shape[1]
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    above = probs >= class_thresholds(probs, labels, w)[None, :] - TOLERANCE
    confident = above.any(1)
    best = np.where(above, probs, -np.inf).argmax(1)
    return np.bincount(labels[confident] * k + best[confident], weights=w[confident], minlength=k * k).reshape(k, k)


def calibrated_joint(counts: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """Q[i, j] ≈ p(given i, true j): each row of the confident joint scaled to its label count, over n. A class
    labelled somewhere but confidently nowhere keeps its labels on the diagonal (no evidence of noise)."""
    counts, label_counts = np.asarray(counts, dtype=np.float64), np.asarray(label_counts, dtype=np.float64)
    rows = counts.sum(1, keepdims=True)
    fallback = np.diag((rows[:, 0] == 0).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(rows > 0, counts / rows, fallback)
    joint = shares * label_counts[:, None]
    total = label_counts.sum()
    return joint / total if total > 0 else joint


def estimate_joint(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The calibrated confident joint p(given, true) of (weighted) samples."""
    probs, labels = _check(probs, labels)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    return calibrated_joint(confident_joint(probs, labels, w), np.bincount(labels, weights=w, minlength=probs.shape[1]))


def noise_rate(joint: np.ndarray) -> float:
    """The off-diagonal mass of p(given, true): the estimated share of wrong labels."""
    return float(1.0 - np.trace(joint) / joint.sum()) if joint.sum() > 0 else 0.0


def bootstrap_interval(probs: np.ndarray, labels: np.ndarray, *, resamples: int = 200, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the noise rate over resamples of the rows (thresholds recomputed in each). The
    number of resamples shrinks on very large inputs (BOOTSTRAP_WORK), never below 50."""
    probs, labels = _check(probs, labels)
    n = len(labels)
    if n == 0:
        return 0.0, 0.0
    resamples = int(max(50, min(resamples, BOOTSTRAP_WORK // max(1, n * probs.shape[1]))))
    rng = np.random.default_rng(seed)
    draws = (np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64) for _ in range(resamples))
    rates = [noise_rate(estimate_joint(probs, labels, weights)) for weights in draws]
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(rates, [tail, 100 - tail])
    return float(lo), float(hi)


def label_health(probs: np.ndarray, labels: np.ndarray, classes: list[str], *, verified: np.ndarray | None = None,
                 top: int = 5, resamples: int = 200, seed: int = 0) -> dict:
    """eval.json's `label_health` block: the estimated noise rate with its bootstrap interval, per given class,
    and the `top` most common (given → true) confusions, each with its share of the given class's labels (the
    estimated transition matrix p(true | given)). Verified rows (a person's label) count as correct."""
    probs, labels = _check(probs, labels)
    k, n = probs.shape[1], len(labels)
    if len(classes) != k:
        raise ValueError(f"{len(classes)} class names for {k} columns of probabilities")
    person = np.zeros(n, bool) if verified is None else np.asarray(verified, dtype=bool)
    doubt = ~person
    counts = np.bincount(labels[doubt], minlength=k).astype(np.float64)
    joint = calibrated_joint(confident_joint(probs[doubt], labels[doubt]), counts) * counts.sum()
    joint += np.diag(np.bincount(labels[person], minlength=k).astype(np.float64))  # a person's word is final
    joint /= max(n, 1)
    rate = noise_rate(joint)
    lo, hi = bootstrap_interval(probs[doubt], labels[doubt], resamples=resamples, seed=seed)
    share_doubt = float(doubt.mean()) if n else 0.0  # the interval of the unverified rows, diluted by the verified ones
    given = joint.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        transition = np.where(given[:, None] > 0, joint / given[:, None], 0.0)  # p(true | given)
    off = joint.copy()
    np.fill_diagonal(off, 0.0)
    order = [int(i) for i in np.argsort(-off, axis=None, kind="stable")[:top] if off.flat[i] > 0]
    per_class = np.bincount(labels, minlength=k)
    return {
        "estimated_noise_rate": rate,
        "estimated_noise_rate_interval": [float(lo * share_doubt), float(hi * share_doubt)],
        "per_class": [{"class": str(name), "n": int(per_class[c]),
                       "estimated_noise_rate": float(1.0 - transition[c, c]) if per_class[c] else 0.0}
                      for c, name in enumerate(classes)],
        "top_confusions": [{"given": str(classes[i // k]), "true": str(classes[i % k]),
                            "share": float(transition[i // k, i % k])} for i in order],
    }
