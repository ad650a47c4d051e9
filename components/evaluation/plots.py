"""PNG plots a person would rather look at than read (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.io import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _figure().close(fig)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, *, title: str) -> None:
    """Row-normalised confusion matrix with counts in the cells."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(classes), 0.8 + 0.5 * len(classes)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 10 else 0)
        ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def plot_score_histogram(scores: np.ndarray, is_noisy: np.ndarray, path: Path, *, xlabel: str, title: str) -> None:
    """Overlaid histograms of a noise score for clean and noisy samples."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    integral = np.allclose(scores, np.round(scores))
    bins = np.arange(scores.min() - 0.5, scores.max() + 1.5) if integral else np.linspace(0, 1, 26)
    ax.hist(scores[~is_noisy], bins=bins, alpha=0.6, label=f"clean labels ({int((~is_noisy).sum())})")
    ax.hist(scores[is_noisy], bins=bins, alpha=0.6, label=f"noisy labels ({int(is_noisy.sum())})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training samples")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def plot_learning_curves(stage1: list[dict], stage2: list[dict], path: Path, *, method: str) -> None:
    """Loss and accuracy of both stages on one epoch axis; the test curve is dashed and marked oracle."""
    plt = _figure()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    offset = len(stage1)
    for rows, name, shift in ((stage1, "stage 1 (ce)", 0), (stage2, f"stage 2 ({method})", offset)):
        epochs = [r["epoch"] + shift for r in rows]
        ax_loss.plot(epochs, [r["loss"] for r in rows], label=name)
        ax_acc.plot(epochs, [r["train_acc"] for r in rows], label=f"{name} train (noisy labels)")
        ax_acc.plot(epochs, [r["val_acc"] for r in rows], label=f"{name} validation")
        ax_acc.plot(epochs, [r["test_acc"] for r in rows], linestyle="--", label=f"{name} test (oracle view)")
    for ax in (ax_loss, ax_acc):
        ax.axvline(offset + 0.5, color="grey", linewidth=0.8)
        ax.set_xlabel("epoch (stage 1, then stage 2)")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend(fontsize=7, loc="lower right")
    _save(fig, path)
