"""The in-memory dataset every source produces, and its checks (the source registry is in `sources`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.data.store import chunked
from components.errors import LnlError


@dataclass(frozen=True)
class Dataset:
    """Features as float32, images channel-first (float32 in [0, 1], or raw uint8 with pixel_max 255), int64 labels.

    `y` is the ground truth where known (for rows whose clean label is unknown, the label the source gives).
    Sources with their own real noisy labels set `y_given` (those labels) and `noise_truth` (per row: 1 the given
    label is known wrong, 0 known right, -1 unknown). `test` marks an official test set, `trusted` rows form the
    validation split.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    pixel_max: float | None = None  # raw pixel scale of images (e.g. 16 for digits, 255 for photos)
    trusted: np.ndarray | None = None  # rows whose labels the user vouches for: they become the validation split
    test: np.ndarray | None = None  # rows of the official test set (then data.test_fraction is not used)
    y_given: np.ndarray | None = None  # the source's own (noisy) labels; noise.kind 'real' trains on them
    noise_truth: np.ndarray | None = None  # int8: 1 given label wrong, 0 right, -1 unknown (with y_given)
    root: str | None = None  # folder the source was read from
    files: tuple[tuple[str, str], ...] = ()  # (path relative to root, sha256) of every source file read
    source_rows: np.ndarray | None = None  # per row: its row in the source as read (None = the row itself)
    row_files: tuple[str, ...] | None = None  # per row: its file under root (file-based sources only)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return self.X.ndim == 4

    def origin(self) -> tuple[np.ndarray, tuple[str, ...] | None]:
        """Each row's source row (npz/csv row, position in load_digits(), index within the official training or
        test files) and, for file-based sources, its path under `root`."""
        rows = np.arange(self.y.size, dtype=np.int64) if self.source_rows is None else self.source_rows
        return rows, self.row_files


def check_dataset(data: Dataset) -> Dataset:
    """Stop with one clear message on labels outside [0, C), empty classes or non-finite features."""
    where = f"dataset '{data.name}'"
    if data.X.shape[0] != data.y.shape[0]:
        raise LnlError(f"{where}: {data.X.shape[0]} feature rows but {data.y.shape[0]} labels")
    if data.y.ndim != 1 or data.y.size == 0:
        raise LnlError(f"{where}: labels must be a non-empty 1-D array")
    n_classes = data.n_classes
    if n_classes < 2:
        raise LnlError(f"{where}: needs at least 2 classes, found {n_classes}")
    bad = (data.y < 0) | (data.y >= n_classes)
    if bad.any():
        raise LnlError(
            f"{where}: {int(bad.sum())} labels outside [0, {n_classes}), e.g. {int(data.y[bad][0])} at row {int(np.flatnonzero(bad)[0])}"
        )
    counts = np.bincount(data.y, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        names = ", ".join(f"{int(c)} ({data.classes[c]})" for c in empty[:5])
        raise LnlError(f"{where}: class {names} has no samples")
    if data.X.dtype.kind == "f" and not all(np.isfinite(chunk).all() for chunk in chunked(data.X)):
        raise LnlError(f"{where}: features contain NaN or infinite values")
    for field in ("trusted", "test", "y_given", "noise_truth"):
        value = getattr(data, field)
        if value is not None and value.shape != data.y.shape:
            raise LnlError(f"{where}: '{field}' must have one entry per sample ({data.y.size}), got {value.shape}")
    if data.trusted is not None and data.trusted.sum() < 2:
        raise LnlError(f"{where}: 'trusted' marks {int(data.trusted.sum())} samples; the trusted split needs at least 2")
    if data.test is not None:
        if not data.test.any() or data.test.all():
            raise LnlError(f"{where}: the official test set must be a non-empty part of the data")
        if data.trusted is not None and (data.test & data.trusted).any():
            raise LnlError(f"{where}: {int((data.test & data.trusted).sum())} rows are both trusted and in the test set")
    if data.source_rows is not None and data.source_rows.shape != data.y.shape:
        raise LnlError(f"{where}: 'source_rows' must have one entry per sample ({data.y.size})")
    if data.row_files is not None and len(data.row_files) != data.y.size:
        raise LnlError(f"{where}: 'row_files' must have one entry per sample ({data.y.size})")
    if data.y_given is not None and ((data.y_given < 0) | (data.y_given >= n_classes)).any():
        raise LnlError(f"{where}: given labels outside [0, {n_classes})")
    if (data.y_given is None) != (data.noise_truth is None):
        raise LnlError(f"{where}: 'y_given' and 'noise_truth' come together")
    return data

