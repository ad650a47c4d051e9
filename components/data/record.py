"""What the data manifest records about a dataset's origin: root, official splits, array and file digests."""

from __future__ import annotations

import hashlib

import numpy as np

from components.data.dataset import Dataset
from components.data.store import chunked

MAX_LISTED_FILES = 100  # more source files than this are summarised by one digest


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order); of the files' contents for photos kept encoded."""
    if hasattr(array, "paths"):  # EncodedImages: nothing decoded, the files' digest stands for the pixels
        return array.digest
    digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
    for chunk in chunked(array):  # C-order chunks: the same bytes as the whole array, never all in memory
        digest.update(chunk.data)
    return digest.hexdigest()


def files_digest(files: tuple[tuple[str, str], ...]) -> str:
    """One sha256 over the sorted (path, sha256) pairs of the source files."""
    return hashlib.sha256("".join(f"{name}\t{sha}\n" for name, sha in sorted(files)).encode()).hexdigest()


def input_record(data: Dataset, source: str) -> dict:
    """How raw source values map to the stored X, so a served model can take data as the source gives it.

    model input = raw / `scale` as float32 in the stored layout; `range` holds the raw values (the pixel scale for
    images and digits, else the observed min/max), `integer` says they are whole numbers (pixel counts), `shape`
    is one sample as the source gives it.
    """
    shape = [int(s) for s in data.X.shape[1:]]
    if data.pixel_max is None:  # user floats, stored as they are
        parts = [(float(c.min()), float(c.max())) for c in chunked(data.X) if c.size]
        low, high = (min(p[0] for p in parts), max(p[1] for p in parts)) if parts else (0.0, 0.0)
        return {"kind": source, "dtype": "float", "shape": shape, "range": [low, high], "scale": 1.0, "integer": False}
    scale = float(data.pixel_max)
    record = {"kind": source, "dtype": "uint8" if scale == 255 else "float64", "shape": shape,
              "range": [0.0, scale], "scale": scale, "integer": True}
    if source == "digits":  # load_digits().images: float64 (N, 8, 8) in 0..16
        record["shape"] = shape[1:]
    return record


def source_record(data: Dataset) -> dict:
    """Manifest entries: source root, official split sizes, array digests, source files (or their digest)."""
    record: dict = {
        "source_root": data.root,
        "arrays_sha256": {"X": array_sha256(data.X), "y": array_sha256(data.y)},
        "dtype": str(data.X.dtype),
    }
    if data.test is not None or data.trusted is not None:
        n_test = int(data.test.sum()) if data.test is not None else 0
        n_val = int(data.trusted.sum()) if data.trusted is not None else 0
        record["official_split"] = {
            "train": int(data.y.size) - n_test - n_val,
            "val": n_val if data.trusted is not None else None,
            "test": n_test if data.test is not None else None,
        }
    if data.y_given is not None:
        truth = data.noise_truth
        record["arrays_sha256"]["y_given"] = array_sha256(data.y_given)
        record["real_noise"] = {
            "labels_known_right": int((truth == 0).sum()),
            "labels_known_wrong": int((truth == 1).sum()),
            "labels_unknown": int((truth == -1).sum()),
        }
    if data.files:
        record["source_files_count"] = len(data.files)
        record["source_files_digest"] = files_digest(data.files)
        if len(data.files) <= MAX_LISTED_FILES:
            record["source_files"] = [{"path": name, "sha256": sha} for name, sha in data.files]
    return record
