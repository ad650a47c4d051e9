"""Photos kept encoded (data.keep_encoded): the 224-px recipe of the web-noisy benchmarks, decoded per batch.

Instead of decoding every photo once into a fixed-size store, the data stage keeps the files where they are
(under data.root, fingerprinted by the `inputs` stage) and writes `data/prepared/X/store.json` with
`"kind": "encoded"`, the files' absolute paths and one digest of their contents. Training batches are decoded by worker processes with a random-resized
crop (Inception-style: area 8–100 %, aspect 3/4–4/3, as the ResNet-50 recipes of Clothing1M and WebVision),
every other read (validation, test, predictions over the training split) with the evaluation view: the shorter
side resized to size / 0.875, then the centre size × size. Each crop is drawn from its own generator seeded by
(seed, epoch, row), so a run is reproducible whatever the worker scheduling.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from components.data.store import META
from components.errors import LnlError
from components.io import write_json

EVAL_RATIO = 0.875  # resize to size / 0.875 (256 for 224), then centre-crop: the standard evaluation view
AREA, ASPECT = (0.08, 1.0), (3 / 4, 4 / 3)


class EncodedImages:
    """What a photo source returns with data.keep_encoded: the files (absolute paths) and the side they are read
    at, array-like in shape and dtype only (nothing is decoded until training asks for a batch)."""

    def __init__(self, paths: list[str], *, size: int, channels: int, digest: str):
        self.paths, self.size, self.channels, self.digest = list(paths), int(size), int(channels), digest
        self.shape = (len(self.paths), self.channels, self.size, self.size)
        self.dtype, self.ndim = np.dtype(np.uint8), 4

    def __len__(self) -> int:
        return len(self.paths)


def write_encoded_store(folder: Path, images: EncodedImages) -> dict:
    """The store of a photo set kept encoded: where the files are and the crop side they are read at."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "encoded", "size": images.size, "channels": images.channels, "shape": list(images.shape),
            "dtype": "|u1", "files": images.paths, "files_sha256": images.digest}
    write_json(folder / META, meta)
    return meta


def crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random-resized-crop box (left, top, right, bottom): ten tries at a random area and aspect, then the
    centred largest box of an allowed aspect (torchvision's RandomResizedCrop rule)."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*AREA)
        aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    ratio = width / height
    if ratio < ASPECT[0]:
        w, h = width, int(round(width / ASPECT[0]))
    elif ratio > ASPECT[1]:
        w, h = int(round(height * ASPECT[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def eval_box(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The evaluation view: the resized image size and the centre crop box in it."""
    scale = size / EVAL_RATIO / min(width, height)
    new = (max(size, int(round(width * scale))), max(size, int(round(height * scale))))
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return new, (left, top, left + size, top + size)


def decode_one(path: str, size: int, mode: str, crop_seed: tuple[int, ...] | None) -> np.ndarray:
    """One photo as uint8 (C, size, size): a seeded random-resized crop, or the evaluation view (None)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft(mode, (size, size))  # JPEG: decode at a reduced scale when the photo is much larger
            image = image.convert(mode)
            if crop_seed is None:
                new, box = eval_box(*image.size, size)
                image = image.resize(new, Image.BILINEAR).crop(box)
            else:
                box = crop_box(*image.size, np.random.default_rng(crop_seed))
                image = image.resize((size, size), Image.BILINEAR, box=box)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise LnlError(f"{path}: the image does not decode ({error})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _decode_many(job: tuple[list[str], int, str, list[tuple[int, ...] | None]]) -> np.ndarray:
    paths, size, mode, seeds = job
    return np.stack([decode_one(p, size, mode, s) for p, s in zip(paths, seeds)])


class EncodedStore:
    """The encoded counterpart of ArrayStore: `take(rows)` decodes the evaluation view, `take_crops(rows, seed,
    epoch)` the training view, both in `workers` processes; shape (N, C, size, size), uint8."""

    kind = "encoded"

    def __init__(self, folder: str | Path, meta: dict, *, workers: int | None = None):
        self.folder, self.meta = Path(folder), meta
        self.size = int(meta["size"])
        self.files = meta["files"]
        self.mode = "L" if int(meta["channels"]) == 1 else "RGB"
        self.shape = tuple(int(s) for s in meta["shape"])
        self.dtype = np.dtype(np.uint8)
        self.workers = workers or max(1, min(8, (os.cpu_count() or 2) - 1))
        self._pool: ProcessPoolExecutor | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def digest(self) -> str:
        return self.meta.get("files_sha256", "")

    def _decode(self, rows: np.ndarray, seeds: list[tuple[int, ...] | None]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if rows.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=np.uint8)
        paths = [self.files[r] for r in rows]
        if self.workers == 1 or rows.size < 8:
            return _decode_many((paths, self.size, self.mode, seeds))
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        step = math.ceil(rows.size / self.workers)
        jobs = [(paths[i:i + step], self.size, self.mode, seeds[i:i + step]) for i in range(0, rows.size, step)]
        return np.concatenate(list(self._pool.map(_decode_many, jobs)))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The evaluation view of the rows."""
        return self._decode(rows, [None] * np.asarray(rows).size)

    def take_crops(self, rows: np.ndarray, *, seed: int, epoch: int) -> np.ndarray:
        """The training view: one seeded random-resized crop per (seed, epoch, row)."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        return self._decode(rows, [(int(seed), int(epoch), int(r)) for r in rows])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(self.shape[0])))
        return self.take(np.asarray(key))

    def chunks(self, rows: np.ndarray | None = None, *, budget: int = 32 * 2**20):
        rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        step = max(1, budget // int(np.prod(self.shape[1:])))
        for start in range(0, rows.size, step):
            yield self.take(rows[start:start + step])

    def load(self) -> np.ndarray:
        return self.take(np.arange(self.shape[0]))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def open_store(folder: str | Path):
    """The prepared store in `folder`: an ArrayStore of shards, or an EncodedStore of files kept encoded."""
    from components.data.store import ArrayStore

    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as error:
        raise LnlError(f"{folder}: not a readable lnlflow data store ({error}); run `dvc repro`") from None
    if isinstance(meta, dict) and meta.get("kind") == "encoded":
        try:
            return EncodedStore(folder, meta)
        except (KeyError, TypeError, ValueError) as error:
            raise LnlError(f"{folder}: not a readable lnlflow data store ({error}); run `dvc repro`") from None
    return ArrayStore(folder)
