"""MNIST / Fashion-MNIST from the official idx files (optionally .gz), parsed with numpy; official test split."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.errors import LnlError
from components.io import sha256_file

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def parse_idx(raw: bytes, magic: int, where: str) -> np.ndarray:
    """uint8 array from an idx file: big-endian int32 magic, then one int32 size per dimension, then the data."""
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise LnlError(f"{where}: too short for an idx header")
    fields = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if int(fields[0]) != magic:
        raise LnlError(f"{where}: magic number {int(fields[0])}, expected {magic}")
    shape = tuple(int(v) for v in fields[1:])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise LnlError(f"{where}: header says {shape} ({expected} bytes) but {len(raw) - header} bytes follow")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, name: str) -> Path:
    for folder in (root, root / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise LnlError(f"data.root: {name}[.gz] not found in {root} (expected the four idx files {', '.join(FILES)})")


def _read(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise LnlError(f"{path}: cannot read ({error})") from None


def load_idx(cfg, name: str, classes: tuple[str, ...]) -> Dataset:
    """Training images then test images as uint8 (N, 1, 28, 28); the t10k files are the official test set."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise LnlError(f"data.root: folder not found: {root}")
    paths = [_find(root, f) for f in FILES]
    arrays = [parse_idx(_read(p), IMAGES_MAGIC if "images" in p.name else LABELS_MAGIC, str(p)) for p in paths]
    x_train, y_train, x_test, y_test = arrays
    for images, labels, part in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if len(images) != len(labels):
            raise LnlError(f"data.root: {part} has {len(images)} images but {len(labels)} labels")
    X = np.concatenate([x_train, x_test])[:, None]
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    test = np.arange(len(y)) >= len(y_train)
    files = tuple((str(p.relative_to(root)), sha256_file(p)) for p in paths)
    rows = np.concatenate([np.arange(len(y_train)), np.arange(len(y_test))])  # index within the train / t10k files
    return Dataset(name, X, y, classes, 255.0, test=test, root=str(root), files=files, source_rows=rows)


def load_mnist_source(cfg) -> Dataset:
    """MNIST: 60,000 training and 10,000 test 28×28 grey digits."""
    return load_idx(cfg, "mnist", tuple(str(c) for c in range(10)))


def load_fashion_mnist_source(cfg) -> Dataset:
    """Fashion-MNIST: the same layout with 10 clothing classes."""
    return load_idx(cfg, "fashion_mnist", FASHION_CLASSES)
