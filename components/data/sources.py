"""Dataset sources: the embedded digits set, user arrays (.npz or .csv), and the benchmark/image-folder modules;
the registry of them all, and `load_dataset`, which loads and checks the one `data.source` names."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from components.data.dataset import Dataset, check_dataset
from components.errors import LnlError
from components.io import load_npy, read_npz_arrays


def load_digits_source(cfg) -> Dataset:
    """scikit-learn's bundled digits: 1,797 8×8 grey images with pixel values 0..16, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return Dataset("digits", X, bunch.target.astype(np.int64), tuple(str(c) for c in range(10)), pixel_max=16.0)


def _existing(cfg, suffix: str) -> Path:
    path = Path(cfg.path)
    if not path.is_file():
        raise LnlError(f"data.path: file not found: {path}")
    if path.suffix.lower() != suffix:
        raise LnlError(f"data.path: source '{cfg.source}' expects a {suffix} file, got {path.name}")
    return path


def _as_images_or_features(X: np.ndarray) -> tuple[np.ndarray, float | None]:
    """2-D → features; 3-D (N,H,W) → grey images; 4-D → channel-first images. uint8 is scaled to [0, 1]."""
    pixel_max = None
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim == 4 and X.shape[-1] in (1, 3) and X.shape[1] not in (1, 3):
        X = X.transpose(0, 3, 1, 2)
    if X.ndim not in (2, 4):
        raise LnlError(f"data.path: X must be (N, d), (N, H, W) or (N, C, H, W); got shape {X.shape}")
    if X.dtype == np.uint8:
        pixel_max = 255.0
        X = X.astype(np.float32) / 255.0
    return np.ascontiguousarray(X, dtype=np.float32), pixel_max


def _ranges(values: np.ndarray, limit: int = 6) -> str:
    """Sorted integers as runs: [0..9, 99] → "0..9, 99" (at most `limit` runs, then "…")."""
    runs: list[list[int]] = []
    for v in (int(x) for x in values):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = [str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}" for a, b in runs[:limit]]
    return ", ".join(text + (["…"] if len(runs) > limit else []))


def _names(classes: tuple[str, ...]) -> str:
    return ", ".join(classes) if len(classes) <= 4 else f"{', '.join(classes[:3])}, …, {classes[-1]}"


def _check_index_labels(y: np.ndarray, classes: tuple[str, ...] | None, where: str, row: Callable[[int], str]) -> None:
    """Integer labels are class indices 0..C-1: one error naming the first offending value and its row."""
    if classes is not None:
        bad = np.flatnonzero((y < 0) | (y >= len(classes)))
        if bad.size:
            first = ", ".join(row(i) for i in bad[:3])
            more = f"; {bad.size} labels are outside, the first at {first}" if bad.size > 1 else ""
            raise LnlError(f"{where}: label {int(y[bad[0]])} in {row(bad[0])} is outside [0, {len(classes)}): the file "
                           f"names {len(classes)} classes ({_names(classes)}){more}")
        return
    if y.size and y.min() < 0:
        first = int(np.argmax(y < 0))
        raise LnlError(f"{where}: labels must be >= 0, found {int(y[first])} in {row(first)}")
    present = np.unique(y)
    empty = np.setdiff1d(np.arange(int(y.max()) + 1 if y.size else 0), present)
    if empty.size:
        above = present[present > empty[0]]
        detail = f"labels present: {_ranges(present)}"
        if above.size <= 3:
            detail += "; first " + ", ".join(f"{int(v)} in {row(int(np.argmax(y == v)))}" for v in above)
        plural = empty.size > 1
        raise LnlError(f"{where}: integer labels are class indices, but class{'es' if plural else ''} "
                       f"{_ranges(empty)} ha{'ve' if plural else 's'} no samples ({detail}); "
                       "number the classes 0..C-1 or use class names")


def encode_labels(raw: np.ndarray, classes: tuple[str, ...] | None, where: str,
                  row: Callable[[int], str] = lambda i: f"row {i}") -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer labels are class indices 0..C-1 (C = max + 1 unless class names are given; an index without
    samples, or outside the named classes, is an error naming the label and its `row`); strings map to
    sorted names."""
    if raw.dtype.kind in "iu":
        y = raw.astype(np.int64)
        _check_index_labels(y, classes, where, row)
        if classes is None:
            classes = tuple(str(c) for c in range(int(y.max()) + 1 if y.size else 0))
        return y, classes
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise LnlError(f"{where}: labels must be whole numbers or class names")
        return encode_labels(raw.astype(np.int64), classes, where, row)
    names = tuple(sorted({str(v) for v in raw}))
    lookup = {name: i for i, name in enumerate(names)}
    return np.array([lookup[str(v)] for v in raw], dtype=np.int64), names


def _trusted_mask(raw: np.ndarray, where: str) -> np.ndarray:
    values = np.asarray(raw)
    if values.dtype == bool:
        return values
    if values.dtype.kind in "iuf" and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    raise LnlError(f"{where}: 'trusted' must hold booleans or 0/1")


def load_npz_source(cfg) -> Dataset:
    """A user .npz with arrays `X` and `y` (optional `classes`: class names, index = label; optional `trusted`:
    a boolean mask of rows with verified labels, which then form the validation split)."""
    path = _existing(cfg, ".npz")
    where = f"data.path {path}"
    arrays = read_npz_arrays(path, ("X", "y"), optional=("classes", "trusted"), where=where, lacking=" (needs X and y)")
    X, y_raw = arrays["X"], arrays["y"]
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else None
    trusted = _trusted_mask(arrays["trusted"], where) if "trusted" in arrays else None
    if X.dtype.kind not in "biuf":
        raise LnlError(f"{where}: X must be numeric, got dtype {X.dtype}")
    X, pixel_max = _as_images_or_features(X)
    y, classes = encode_labels(y_raw, classes, where, lambda i: f"row {i} (y[{i}])")
    return Dataset(path.stem, X, y, classes, pixel_max, trusted)


def load_csv_source(cfg) -> Dataset:
    """A user .csv with a header: numeric feature columns plus the label column `data.label_column`."""
    path = _existing(cfg, ".csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise LnlError(f"data.path: {path.name} has no data rows")
    header = rows[0]
    numbered = [(line, row) for line, row in enumerate(rows[1:], start=2) if row]  # blank lines carry no sample
    body = [row for _, row in numbered]
    if cfg.label_column not in header:
        raise LnlError(f"data.label_column: column '{cfg.label_column}' not in {path.name} (columns: {', '.join(header)})")
    label_at = header.index(cfg.label_column)
    features = [i for i in range(len(header)) if i != label_at]
    if not features:
        raise LnlError(f"data.path: {path.name} has no feature columns")
    for line, row in numbered:
        if len(row) != len(header):
            raise LnlError(f"data.path: {path.name} line {line} has {len(row)} fields, expected {len(header)}")
    try:
        X = np.array([[float(row[i]) for i in features] for row in body], dtype=np.float32)
    except ValueError as error:
        raise LnlError(f"data.path: {path.name}: non-numeric feature value ({error})") from None
    labels = np.array([row[label_at] for row in body])
    try:
        labels = labels.astype(np.int64)
    except ValueError:
        pass
    y, classes = encode_labels(labels, None, f"data.path {path}", lambda i: f"line {numbered[i][0]}")
    return Dataset(path.stem, X, y, classes, None)


def load_npy_source(cfg) -> Dataset:
    """A folder (data.path) with X.npy and y.npy, optional trusted.npy (bool mask) and classes.npy (names):
    X is memory-mapped, never read whole, so arrays larger than memory go straight into the data store.
    X as (N, d), (N, H, W), (N, C, H, W) or (N, H, W, C); uint8 images keep their bytes (pixel_max 255)."""
    folder = Path(cfg.path)
    if not folder.is_dir():
        raise LnlError(f"data.path: source 'npy' expects a folder holding X.npy and y.npy, got {folder}")
    where = f"data.path {folder}"

    def array(name: str, *, mmap: bool = False, required: bool = True):
        path = folder / f"{name}.npy"
        if not path.is_file():
            if required:
                raise LnlError(f"{where}: {name}.npy not found (the folder needs X.npy and y.npy)")
            return None
        return load_npy(path, where=f"data.path {path}", mmap=mmap)

    X, y_raw = array("X", mmap=True), array("y")
    classes = array("classes", required=False)
    trusted = array("trusted", required=False)
    if X.dtype.kind not in "biuf":
        raise LnlError(f"{where}: X must be numeric, got dtype {X.dtype}")
    if X.ndim == 3:
        X = X[:, None]  # a view: still memory-mapped
    if X.ndim == 4 and X.shape[-1] in (1, 3) and X.shape[1] not in (1, 3):
        X = X.transpose(0, 3, 1, 2)  # channel-last: a view, copied chunk by chunk into the store
    if X.ndim not in (2, 4):
        raise LnlError(f"{where}: X must be (N, d), (N, H, W) or (N, C, H, W); got shape {X.shape}")
    pixel_max = 255.0 if X.dtype == np.uint8 else None
    if X.dtype not in (np.uint8, np.float32):
        X = AsType(X, np.float32)
    y, names = encode_labels(np.asarray(y_raw), tuple(str(c) for c in classes) if classes is not None else None,
                             where, lambda i: f"row {i} (y.npy[{i}])")
    mask = _trusted_mask(trusted, where) if trusted is not None else None
    return Dataset(folder.name, X, y, names, pixel_max, mask)


class AsType:
    """An array-like view of `array` as `dtype`, converted slice by slice (never all at once)."""

    def __init__(self, array, dtype):
        self.array, self.dtype = array, np.dtype(dtype)
        self.shape, self.ndim = array.shape, array.ndim

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.array[key], dtype=self.dtype)


def _benchmark(module: str, loader: str) -> Callable[..., Dataset]:
    """Import a benchmark source's module only when it is used."""

    def load(cfg) -> Dataset:
        import importlib

        return getattr(importlib.import_module(f"components.data.{module}"), loader)(cfg)

    load.__name__ = loader
    return load


SOURCES: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits_source,
    "npz": load_npz_source,
    "csv": load_csv_source,
    "npy": load_npy_source,
    "cifar10": _benchmark("cifar", "load_cifar10_source"),
    "cifar100": _benchmark("cifar", "load_cifar100_source"),
    "mnist": _benchmark("idx", "load_mnist_source"),
    "fashion_mnist": _benchmark("idx", "load_fashion_mnist_source"),
    "image_folder": _benchmark("image_folder", "load_image_folder_source"),
    "clothing1m": _benchmark("clothing1m", "load_clothing1m_source"),
    "mini_webvision": _benchmark("mini_webvision", "load_mini_webvision_source"),
    "animal10n": _benchmark("animal10n", "load_animal10n_source"),
    "food101n": _benchmark("food101n", "load_food101n_source"),
}


def load_dataset(cfg) -> Dataset:
    """Load and check the dataset named by `cfg` (a `DataParams`)."""
    loader = SOURCES.get(cfg.source)
    if loader is None:
        raise LnlError(f"data.source: unknown source '{cfg.source}'; choose one of {', '.join(SOURCES)}")
    return check_dataset(loader(cfg))
