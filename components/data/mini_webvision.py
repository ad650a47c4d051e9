"""mini-WebVision (as in DivideMix): the Google images of the first 50 WebVision 1.0 classes.

Train = info/train_filelist_google.txt (labels < 50, real web noise, unknown per sample); test = the WebVision
validation set (info/val_filelist.txt, images in val_images_256/); the validation split is carved from training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.web_lists import UNKNOWN, Part, assemble, read_key_labels, read_lines, required
from components.errors import LnlError

N_CLASSES = 50


def _first_classes(root: Path) -> tuple[str, ...]:
    """Names from info/synsets.txt if present (first 50 lines), else the class numbers."""
    synsets = root / "info" / "synsets.txt"
    if synsets.is_file():
        names = read_lines(synsets)[:N_CLASSES]
        if len(names) == N_CLASSES:
            return tuple(names)
    return tuple(str(c) for c in range(N_CLASSES))


def load_mini_webvision_source(cfg) -> Dataset:
    """Decoded to data.image_size; only classes 0..49 are kept."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise LnlError(f"data.root: folder not found: {root}")
    train_list = required(root / "info" / "train_filelist_google.txt", "WebVision training list")
    val_list = required(root / "info" / "val_filelist.txt", "WebVision validation list")
    train = {k: v for k, v in read_key_labels(train_list).items() if v < N_CLASSES}
    test = {k: v for k, v in read_key_labels(val_list).items() if v < N_CLASSES}
    given = np.fromiter(train.values(), dtype=np.int64, count=len(train))
    parts = [
        Part("train", root, list(train), given, given, np.full(len(given), UNKNOWN, dtype=np.int8)),
        Part.clean("test", root / "val_images_256", list(test), list(test.values())),
    ]
    return assemble("mini_webvision", cfg, _first_classes(root), parts, [train_list, val_list])
