"""CIFAR-10 / CIFAR-100 in the official python format, with the official train/test split.

Rows 0..49,999 are the training images in the official order (data_batch_1..5, or `train`), so the CIFAR-N
label files line up with them; the test images follow and form the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.download import download_and_extract
from components.data.safe_pickle import load_data_pickle
from components.errors import LnlError
from components.io import sha256_file


@dataclass(frozen=True)
class CifarLayout:
    """One CIFAR release: its folder, batch files, label key and official archive."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    url: str
    md5: str


CIFAR10 = CifarLayout(
    "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
    b"labels", b"label_names", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
)
CIFAR100 = CifarLayout(
    "cifar100", "cifar-100-python", ("train",), "test", "meta",
    b"fine_labels", b"fine_label_names", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
)


def _files(layout: CifarLayout) -> tuple[str, ...]:
    return (*layout.train, layout.test, layout.meta)


def find_cifar(layout: CifarLayout, root: Path, download: bool) -> Path:
    """The folder holding the batch files: `root/<folder>` or `root` itself; downloaded if allowed and absent."""
    for folder in (root / layout.folder, root):
        if all((folder / name).is_file() for name in _files(layout)):
            return folder
    if download:
        if (root / layout.folder).is_dir():  # never replaced: it may hold the user's own files
            missing = [name for name in _files(layout) if not (root / layout.folder / name).is_file()]
            raise LnlError(f"data.root: {root / layout.folder} is incomplete (missing {', '.join(missing)}); "
                           "add the missing files, or move the folder away to download afresh")
        return download_and_extract(layout.url, layout.md5, root, layout.folder)
    raise LnlError(
        f"data.root: {layout.name} not found under {root}: expected {layout.folder}/ with {', '.join(_files(layout))} "
        f"(the official python version, {layout.url}); set data.download: true to fetch it"
    )


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = load_data_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise LnlError(f"{path}: not a CIFAR batch (needs keys data and {label_key.decode()})")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise LnlError(f"{path}: expected uint8 data (N, 3072) and N labels, got {data.dtype} {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(layout: CifarLayout, cfg) -> Dataset:
    """Training batches then the test batch as uint8 (N, 3, 32, 32); the test batch is the official test set."""
    root = Path(cfg.root)
    if not root.is_dir() and not cfg.download:
        raise LnlError(f"data.root: folder not found: {root}")
    folder = find_cifar(layout, root, cfg.download)
    meta = load_data_pickle(folder / layout.meta)
    if not isinstance(meta, dict) or layout.names_key not in meta:
        raise LnlError(f"{folder / layout.meta}: lacks {layout.names_key.decode()}")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout.names_key])
    parts = [_read_batch(folder / name, layout.label_key) for name in (*layout.train, layout.test)]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_test = len(parts[-1][1])
    test = np.arange(len(y)) >= len(y) - n_test
    files = tuple((str((folder / n).relative_to(root)), sha256_file(folder / n)) for n in _files(layout))
    rows = np.concatenate([np.arange(len(y) - n_test), np.arange(n_test)])  # CIFAR training index / test index
    return Dataset(layout.name, X, y, classes, 255.0, test=test, root=str(root), files=files, source_rows=rows)


def load_cifar10_source(cfg) -> Dataset:
    """CIFAR-10: 50,000 training and 10,000 test 32×32 colour images, 10 classes."""
    return load_cifar(CIFAR10, cfg)


def load_cifar100_source(cfg) -> Dataset:
    """CIFAR-100 with its 100 fine labels."""
    return load_cifar(CIFAR100, cfg)
