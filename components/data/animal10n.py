"""ANIMAL-10N (Song et al., 2019): 64×64 animal photos named <label>_<index>.jpg, real noise unknown per sample.

Train = training/, test = testing/; the validation split is carved from training (its labels are noisy too).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.web_lists import UNKNOWN, Part, assemble
from components.errors import LnlError

NAME = re.compile(r"(\d+)_\d+\.jpe?g", re.IGNORECASE)
CLASSES = tuple(str(c) for c in range(10))  # the release numbers the classes 0-9


def _folder(root: Path, sub: str) -> tuple[list[str], list[int]]:
    folder = root / sub
    if not folder.is_dir():
        raise LnlError(f"data.root: {folder} not found (ANIMAL-10N has training/ and testing/)")
    names, labels = [], []
    for path in sorted(folder.iterdir()):
        match = NAME.fullmatch(path.name)
        if match is None:
            if path.is_file():
                raise LnlError(f"data.root: {sub}/{path.name} is not named <label>_<index>.jpg")
            continue
        names.append(path.name)
        labels.append(int(match.group(1)))
    return names, labels


def load_animal10n_source(cfg) -> Dataset:
    """Decoded to data.image_size (the release is 64×64)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise LnlError(f"data.root: folder not found: {root}")
    train_names, train_labels = _folder(root, "training")
    test_names, test_labels = _folder(root, "testing")
    given = np.asarray(train_labels, dtype=np.int64)
    parts = [
        Part("train", root / "training", train_names, given, given, np.full(len(given), UNKNOWN, dtype=np.int8)),
        Part.clean("test", root / "testing", test_names, test_labels),
    ]
    return assemble("animal10n", cfg, CLASSES, parts, [])
