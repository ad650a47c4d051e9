"""Seeded stratified train / validation / test split."""

from __future__ import annotations

import numpy as np

from components.errors import LnlError


def stratified_split(
    y: np.ndarray, *, n_classes: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Per class: shuffle, take round(n·test) for test and round(n·val) for val (each ≥ 1), rest train.

    Returns sorted index arrays `train`, `val`, `test` into `y`.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        n = members.size
        n_test = max(1, int(round(n * test_fraction)))
        n_val = max(1, int(round(n * val_fraction)))
        if n - n_test - n_val < 1:
            raise LnlError(f"class {c} has only {n} samples: too few for a train/val/test split")
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
