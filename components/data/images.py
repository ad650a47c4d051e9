"""Decode image files with Pillow into one uint8 (N, C, H, W) array (RGB, or grey when every image is grey)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from components.data.store import scratch_array
from components.errors import LnlError
from components.io import sha256_file

GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _map_in_batches(pool: ThreadPoolExecutor, fn: Callable, items: list, batch: int = 4096) -> Iterator:
    """`pool.map` over bounded batches, so a million files never hold a million pending results."""
    for start in range(0, len(items), batch):
        yield from pool.map(fn, items[start : start + batch])


def check_files_exist(root: Path, names: list[str], where: str) -> None:
    """One error naming the first missing file (and how many are missing), before anything is decoded."""
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise LnlError(f"{where}: {len(missing)} listed image(s) not found under {root}, e.g. {missing[0]}")


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise LnlError(f"{path}: not a readable image ({error})") from None


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    from PIL import Image

    raw = path.read_bytes()
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image = image.convert(mode)
            if size is not None and image.size != size:
                image = image.resize(size, Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise LnlError(f"{path}: the image does not decode ({error})") from None
    return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)), hashlib.sha256(raw).hexdigest()


def _checked_headers(root: Path, names: list[str], where: str) -> tuple[list[Path], list[tuple[str, tuple[int, int]]]]:
    """The files' paths and (mode, size) headers: one error for no files, a missing file or a non-image."""
    if not names:
        raise LnlError(f"{where}: no images found under {root}")
    check_files_exist(root, names, where)
    paths = [root / n for n in names]
    with ThreadPoolExecutor(_workers()) as pool:
        return paths, list(_map_in_batches(pool, _header, paths))


def encoded_images(root: Path, names: list[str], image_size: int, where: str, *, mode: str | None = None):
    """The files kept encoded (data.keep_encoded): every header read (a file that is not an image stops the run)
    and every file hashed, nothing decoded; returns (EncodedImages, per-file sha256)."""
    from components.data.encoded import EncodedImages

    paths, headers = _checked_headers(root, names, where)
    with ThreadPoolExecutor(_workers()) as pool:
        digests = list(_map_in_batches(pool, sha256_file, paths))
    mode = mode or ("L" if all(m in GREY_MODES for m, _ in headers) else "RGB")
    digest = hashlib.sha256("".join(digests).encode()).hexdigest()
    images = EncodedImages([str(p.resolve()) for p in paths], size=image_size, channels=1 if mode == "L" else 3,
                           digest=digest)
    return images, digests


def decode_images(
    root: Path, names: list[str], image_size: int | None, where: str, *, mode: str | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """All `names` (relative to `root`) as uint8 (N, C, S, S) and the sha256 of each file (`mode`: force RGB or L).

    Every header is read first: a file that is not an image, or (without `image_size`) images of different
    sizes, stop the run before any pixel is decoded. Images are resized (not cropped) to image_size². `out` (an
    array of the right shape, e.g. a slice of a memory map) receives the pixels instead of a new array.
    """
    paths, headers = _checked_headers(root, names, where)
    with ThreadPoolExecutor(_workers()) as pool:
        sizes = {size for _, size in headers}
        if image_size is None and len(sizes) > 1:
            first: dict[tuple[int, int], str] = {}
            for name, (_, shape) in zip(names, headers):
                first.setdefault(shape, name)
            examples = ", ".join(f"{name}: {w}×{h}" for (w, h), name in list(first.items())[:2])
            raise LnlError(f"{where}: images have different sizes ({examples}); set data.image_size to resize them all to one square size")
        size = (image_size, image_size) if image_size is not None else next(iter(sizes))
        mode = mode or ("L" if all(m in GREY_MODES for m, _ in headers) else "RGB")
        shape = (len(paths), 1 if mode == "L" else 3, size[1], size[0])
        X = scratch_array(shape, np.uint8) if out is None else out  # a big set decodes into a memory map
        if X.shape != shape:
            raise ValueError(f"decode_images: out has shape {X.shape}, the images need {shape}")
        digests = []
        for i, (pixels, digest) in enumerate(_map_in_batches(pool, lambda p: _decode(p, mode, size), paths)):
            X[i] = pixels
            digests.append(digest)
    return X, digests
