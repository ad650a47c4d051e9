"""A user's image folder: one sub-folder per class, or a flat folder plus a labels CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.images import IMAGE_SUFFIXES, decode_images, encoded_images
from components.data.sources import encode_labels
from components.errors import LnlError

TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes"}, {"0", "false", "no", ""}


def _class_folders(root: Path) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise LnlError(f"data.root: {root} has no class sub-folders (for a flat folder of images set data.labels_csv)")
    names, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        names += [str(p.relative_to(root)) for p in files]
        labels += [label] * len(files)
    return names, np.array(labels, dtype=np.int64), classes


def _encode_csv_labels(values: list[str]) -> tuple[np.ndarray, tuple[str, ...], bool]:
    """Labels as the csv source encodes them (integers 0..max, e.g. "01" = 1; else sorted names); also whether numeric."""
    raw = np.array(values)
    try:
        raw = raw.astype(np.int64)
    except ValueError:
        pass
    y, classes = encode_labels(raw, None, "data.labels_csv", lambda i: f"line {i + 2}")
    return y, classes, raw.dtype.kind == "i"


def _read_labels_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise LnlError(f"data.labels_csv: file not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = [{k: (v or "").strip() for k, v in row.items()} for row in reader]
    missing = {"file", "label"} - set(columns)
    if missing:
        raise LnlError(f"data.labels_csv: {path.name} lacks column(s) {', '.join(sorted(missing))} (columns: file,label[,trusted][,clean])")
    if not rows:
        raise LnlError(f"data.labels_csv: {path.name} has no data rows")
    return rows


def _index(values: list[str], lookup: dict[str, int], column: str, path: Path, *, optional: bool = False) -> np.ndarray:
    """Class indices of `values` (-1 for an empty optional cell); a value outside the class list is an error."""
    bad = next((i for i, v in enumerate(values) if v not in lookup and not (optional and v == "")), None)
    if bad is not None:
        raise LnlError(f"data.labels_csv: {path.name} line {bad + 2}: {column} '{values[bad]}' is not in the class list ({', '.join(lookup)})")
    return np.array([lookup.get(v, -1) for v in values], dtype=np.int64)


def _csv_labels(cfg, root: Path):
    path = Path(cfg.labels_csv)
    rows = _read_labels_csv(path)
    names = [r["file"] for r in rows]
    empty = next((i for i, r in enumerate(rows) if not r["file"] or not r["label"]), None)
    if empty is not None:
        raise LnlError(f"data.labels_csv: {path.name} line {empty + 2}: empty file or label")
    first: dict[str, int] = {}
    for line, name in enumerate(names, start=2):
        if first.setdefault(name, line) != line:
            raise LnlError(f"data.labels_csv: {path.name} lines {first[name]} and {line} both list '{name}' "
                           "(one row per image)")
    if cfg.classes is not None:  # the user's class list: names only, in label order
        classes, numeric = tuple(cfg.classes), False
        lookup = {c: i for i, c in enumerate(classes)}
        given = _index([r["label"] for r in rows], lookup, "label", path)
    else:
        given, classes, numeric = _encode_csv_labels([r["label"] for r in rows])
        lookup = {c: i for i, c in enumerate(classes)}
    trusted = None
    if "trusted" in rows[0]:
        words = [r["trusted"].lower() for r in rows]
        bad = next((i for i, w in enumerate(words) if w not in TRUE_WORDS | FALSE_WORDS), None)
        if bad is not None:
            raise LnlError(f"data.labels_csv: {path.name} line {bad + 2}: trusted must be 1/0/true/false, got '{rows[bad]['trusted']}'")
        trusted = np.array([w in TRUE_WORDS for w in words])
    y, y_given, known = given, None, None
    if "clean" in rows[0]:  # ground truth (empty = unknown): the given labels become real noise
        cells = [r["clean"] for r in rows]
        if numeric:  # "01" names class 1, as in the label column
            cells = [str(int(v)) if v.lstrip("-").isdigit() else v for v in cells]
        clean = _index(cells, lookup, "clean", path, optional=True)
        y_given, y = given, np.where(clean >= 0, clean, given)
        known = np.where(clean >= 0, (clean != given).astype(np.int8), np.int8(-1)).astype(np.int8)
    return names, y, classes, trusted, y_given, known


def load_image_folder_source(cfg) -> Dataset:
    """Images decoded with Pillow (RGB, or L if all grey), resized to data.image_size if set."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise LnlError(f"data.root: folder not found: {root}")
    trusted = y_given = known = None
    if cfg.labels_csv:
        names, y, classes, trusted, y_given, known = _csv_labels(cfg, root)
    else:
        names, y, classes = _class_folders(root)
    if cfg.keep_encoded:
        X, digests = encoded_images(root, names, cfg.image_size, "data.root")
    else:
        X, digests = decode_images(root, names, cfg.image_size, "data.root")
    return Dataset(
        root.name or "images", X, y, classes, 255.0, trusted=trusted, y_given=y_given, noise_truth=known,
        root=str(root), files=tuple(zip(names, digests)), row_files=tuple(names),
    )
