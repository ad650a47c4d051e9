"""The in-memory dataset every source produces, its checks, and the source registry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.errors import LnlError


@dataclass(frozen=True)
class Dataset:
    """Features or images as float32 (images channel-first, scaled to [0, 1]) and int64 labels."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    pixel_max: float | None = None  # raw pixel scale of images (e.g. 16 for digits, 255 for photos)
    trusted: np.ndarray | None = None  # rows whose labels the user vouches for: they become the validation split

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return self.X.ndim == 4


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
    if not np.isfinite(data.X).all():
        raise LnlError(f"{where}: features contain NaN or infinite values")
    if data.trusted is not None:
        if data.trusted.shape != data.y.shape:
            raise LnlError(f"{where}: 'trusted' must have one entry per sample ({data.y.size}), got {data.trusted.shape}")
        if data.trusted.sum() < 2:
            raise LnlError(f"{where}: 'trusted' marks {int(data.trusted.sum())} samples; the trusted split needs at least 2")
    return data


def load_dataset(cfg) -> Dataset:
    """Load and check the dataset named by `cfg` (a `DataParams`)."""
    from components.data import sources

    loader = sources.SOURCES.get(cfg.source)
    if loader is None:
        raise LnlError(f"data.source: unknown source '{cfg.source}'; choose one of {', '.join(sources.SOURCES)}")
    return check_dataset(loader(cfg))
