"""Seeded stratified train / validation / test split."""

from __future__ import annotations

import numpy as np

from components.errors import LnlError


def stratified_split(
    y: np.ndarray, *, n_classes: int, val_fraction: float, test_fraction: float, seed: int,
    trusted: np.ndarray | None = None, test: np.ndarray | None = None, class_names: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Per class: shuffle, take round(n·test) for test and round(n·val) for val (each ≥ 1), rest train.

    `val_fraction` 0 (and no `trusted` rows): no validation split; every non-test row trains.

    With a `trusted` mask (rows whose labels the user vouches for), the validation split is exactly those
    rows and the test/train split is drawn from the others. With a `test` mask (an official test set), the
    test split is exactly those rows and val/train are drawn from the others (`test_fraction` is unused).
    Returns sorted index arrays into `y`.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    if trusted is not None:
        parts["val"].append(np.flatnonzero(trusted))
        val_fraction = 0.0
    taken = trusted if test is None else (test if trusted is None else trusted | test)
    if test is not None:
        parts["test"].append(np.flatnonzero(test))
    for c in range(n_classes):
        candidates = np.flatnonzero((y == c) & ~taken) if taken is not None else np.flatnonzero(y == c)
        members = rng.permutation(candidates)
        n = members.size
        n_test = max(1, int(round(n * test_fraction))) if test is None else 0
        n_val = max(1, int(round(n * val_fraction))) if trusted is None and val_fraction > 0 else 0
        if n - n_test - n_val < 1:
            name = f"class {c}" + (f" ('{class_names[c]}')" if class_names and class_names[c] != str(c) else "")
            parts_named = "train/val/test" if n_val else "train/test"
            held, advice = _besides(y == c, trusted, test)
            raise LnlError(f"{name} has only {n} samples{held}: too few for a {parts_named} split{advice}")
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}



def _besides(members: np.ndarray, trusted: np.ndarray | None, test: np.ndarray | None) -> tuple[str, str]:
    """(where a class's other samples went, what to do): its trusted rows (the validation split), its rows in the
    official test set."""
    held = [f"{int((members & mask).sum())} {what}" for mask, what in
            ((trusted, "trusted ones (the validation split)"), (test, "in the official test set"))
            if mask is not None and (members & mask).any()]
    if not held:
        return "", ""
    advice = "; mark fewer of its rows trusted" if trusted is not None and (members & trusted).any() else ""
    return f" besides its {' and '.join(held)}", advice
