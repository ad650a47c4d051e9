"""Clothing1M (Xiao et al., 2015): 1M web-labelled clothing photos, 14 classes, official clean val/test subsets.

Train on noisy_train keys with their noisy labels; validation = clean_val, test = clean_test (clean labels).
Training images that also have a clean label (clean_label_kv) give partial ground truth of the noise; the
rest are unknown. Keys listed in clean_val/clean_test are left out of training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.web_lists import RIGHT, UNKNOWN, WRONG, Part, assemble, read_key_labels, read_lines, required
from components.errors import LnlError

LISTS = (
    "noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt",
    "clean_val_key_list.txt", "clean_test_key_list.txt", "category_names_eng.txt",
)


def _labels(keys: list[str], table: dict[str, int], listing: str, kv: str) -> list[int]:
    missing = next((k for k in keys if k not in table), None)
    if missing is not None:
        raise LnlError(f"data.root: {missing} (in {listing}) has no label in {kv}")
    return [table[k] for k in keys]


def load_clothing1m_source(cfg) -> Dataset:
    """The official Clothing1M splits decoded to data.image_size."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise LnlError(f"data.root: folder not found: {root}")
    paths = [required(root / name, "Clothing1M annotation file") for name in LISTS]
    noisy_kv, clean_kv = read_key_labels(paths[0]), read_key_labels(paths[1])
    train_keys, val_keys, test_keys = (read_lines(p) for p in paths[2:5])
    classes = tuple(read_lines(paths[5]))
    if len(classes) != 14:
        raise LnlError(f"data.root: {LISTS[5]} lists {len(classes)} classes, expected 14")
    held_out = set(val_keys) | set(test_keys)
    train_keys = [k for k in train_keys if k not in held_out]
    given = np.array(_labels(train_keys, noisy_kv, LISTS[2], LISTS[0]), dtype=np.int64)
    clean = np.array([clean_kv.get(k, -1) for k in train_keys], dtype=np.int64)
    truth = np.where(clean < 0, UNKNOWN, np.where(clean == given, RIGHT, WRONG)).astype(np.int8)
    parts = [
        Part("train", root, train_keys, np.where(clean >= 0, clean, given), given, truth),
        Part.clean("val", root, val_keys, _labels(val_keys, clean_kv, LISTS[3], LISTS[1])),
        Part.clean("test", root, test_keys, _labels(test_keys, clean_kv, LISTS[4], LISTS[1])),
    ]
    return assemble("clothing1m", cfg, classes, parts, paths)
