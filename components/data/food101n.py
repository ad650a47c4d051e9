"""Food-101N (Lee et al., 2018): 310k web food photos in Food-101's 101 classes; tested on Food-101's test split.

Train = meta/imagelist.tsv minus the verified validation images, with the folder name as the (noisy) label;
verified_train.tsv gives partial ground truth (1: label right, 0: wrong). Validation = verified_val.tsv rows
marked 1 (labels checked by humans). Test = Food-101 (data.food101_root) meta/test.txt, images/<class>/<id>.jpg.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.web_lists import RIGHT, UNKNOWN, WRONG, Part, assemble, read_key_labels, read_lines, required
from components.errors import LnlError


def _class_of(keys: list[str], lookup: dict[str, int], listing: Path) -> list[int]:
    bad = next((k for k in keys if k.split("/", 1)[0] not in lookup), None)
    if bad is not None:
        raise LnlError(f"data.root: {listing.name}: '{bad}' is not in a class of meta/classes.txt")
    return [lookup[k.split("/", 1)[0]] for k in keys]


def load_food101n_source(cfg) -> Dataset:
    """Decoded to data.image_size."""
    root, food = Path(cfg.root), Path(cfg.food101_root)
    for folder, key in ((root, "data.root"), (food, "data.food101_root")):
        if not folder.is_dir():
            raise LnlError(f"{key}: folder not found: {folder}")
    meta = root / "meta"
    paths = [required(meta / name, "Food-101N metadata") for name in ("classes.txt", "imagelist.tsv", "verified_train.tsv", "verified_val.tsv")]
    test_list = required(food / "meta" / "test.txt", "Food-101 test split (data.food101_root)")
    classes = tuple(read_lines(paths[0], header=True))
    lookup = {c: i for i, c in enumerate(classes)}
    verified_train = read_key_labels(paths[2], sep="\t", header=True)
    verified_val = read_key_labels(paths[3], sep="\t", header=True)
    train_keys = [k for k in read_lines(paths[1], header=True) if k not in verified_val]
    given = np.asarray(_class_of(train_keys, lookup, paths[1]), dtype=np.int64)
    check = np.array([verified_train.get(k, -1) for k in train_keys], dtype=np.int64)
    truth = np.where(check == 1, RIGHT, np.where(check == 0, WRONG, UNKNOWN)).astype(np.int8)
    val_keys = [k for k, ok in verified_val.items() if ok == 1]
    test_keys = read_lines(test_list)
    parts = [
        Part("train", root / "images", train_keys, given, given, truth),
        Part.clean("val", root / "images", val_keys, _class_of(val_keys, lookup, paths[3])),
        Part.clean("test", food / "images", [f"{k}.jpg" for k in test_keys], _class_of(test_keys, lookup, test_list)),
    ]
    return assemble("food101n", cfg, classes, parts, [*paths, test_list])
