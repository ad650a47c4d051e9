"""The prepared inputs X as a folder of fixed-size `.npy` shards: memory-mappable, streamed in chunks, never held
whole unless the training path asks for it.

`data/prepared/X/` holds `shard-00000.npy` … (each `rows_per_shard` rows, the last one shorter) and `store.json`
(shape, dtype, rows per shard, each shard's sha256). Writing goes chunk by chunk from anything that slices like an
array (an in-memory array, a memory-mapped `.npy`, a decoded scratch file), so the data stage's memory stays flat
in N. Reading gathers the requested rows shard by shard (`take`), in chunks (`chunks`) or all at once (`load`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from components.errors import LnlError
from components.io import write_json

SHARD_BYTES = 64 * 2**20  # target shard size: large reads, small enough to re-hash or re-cache one at a time
CHUNK_BYTES = 32 * 2**20  # working-set size of chunked passes (hashing, checks, copies)
META = "store.json"


def rows_per(nbytes_per_row: int, budget: int) -> int:
    """How many rows fit in `budget` bytes (at least one)."""
    return max(1, budget // max(1, nbytes_per_row))


def row_chunks(n: int, rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks of `rows` rows covering 0..n."""
    for start in range(0, n, rows):
        yield start, min(n, start + rows)


def chunked(array: Any, *, budget: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """Consecutive row chunks of an array-like (anything with shape, dtype and slicing) as in-memory arrays."""
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * np.dtype(array.dtype).itemsize
    for start, stop in row_chunks(len(array), rows_per(row_bytes, budget)):
        yield np.ascontiguousarray(array[start:stop])


def write_store(folder: Path, X: Any, *, shard_bytes: int = SHARD_BYTES) -> dict:
    """Write `X` (array-like) as shards into `folder` (created); returns the store's metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    shape, dtype = tuple(int(s) for s in X.shape), np.dtype(X.dtype)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    per_shard = rows_per(row_bytes, shard_bytes)
    shards = []
    for number, (start, stop) in enumerate(row_chunks(shape[0], per_shard)):
        name = f"shard-{number:05d}.npy"
        out = np.lib.format.open_memmap(folder / name, mode="w+", dtype=dtype, shape=(stop - start, *shape[1:]))
        for a, b in row_chunks(stop - start, rows_per(row_bytes, CHUNK_BYTES)):
            out[a:b] = X[start + a: start + b]
        out.flush()
        del out
        shards.append({"file": name, "rows": stop - start, "sha256": _file_sha256(folder / name)})
    meta = {"shape": list(shape), "dtype": dtype.str, "rows_per_shard": per_shard, "shards": shards}
    write_json(folder / META, meta)
    return meta


def dataset_digest(labels_sha256: str, store: dict) -> str:
    """The prepared dataset's identity: dataset.npz's sha256 and every shard's, in order (an encoded store: its
    files' digest and crop side)."""
    parts = [s["sha256"] for s in store["shards"]] if "shards" in store else [store["files_sha256"], str(store["size"])]
    return hashlib.sha256((labels_sha256 + "".join(parts)).encode()).hexdigest()


def store_summary(store: dict) -> dict:
    """The data manifest's account of the store."""
    nbytes = int(np.prod(store["shape"], dtype=np.int64)) * np.dtype(store["dtype"]).itemsize
    if store.get("kind") == "encoded":
        return {"folder": "X", "kind": "encoded", "files": len(store["files"]), "crop_size": store["size"],
                "decoded_bytes": nbytes}
    return {"folder": "X", "kind": "shards", "shards": len(store["shards"]), "rows_per_shard": store["rows_per_shard"],
            "dtype": store["dtype"], "bytes": nbytes}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArrayStore:
    """A written store, read through memory maps: `take(rows)`, `chunks()`, `load()`; slicing and integer-array
    indexing (`store[rows]`, `store[a:b]`) return in-memory arrays like numpy would."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / META).read_text())
            self.shape = tuple(int(s) for s in meta["shape"])
            self.dtype = np.dtype(meta["dtype"])
            self.rows_per_shard = int(meta["rows_per_shard"])
            self.shard_files = [self.folder / s["file"] for s in meta["shards"]]
            self.meta = meta
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LnlError(f"{self.folder}: not a readable lnlflow data store ({error}); run `dvc repro`") from None
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def digest(self) -> str:
        """One sha256 over the shards' digests, in order: the store's content identity."""
        return hashlib.sha256("".join(s["sha256"] for s in self.meta["shards"]).encode()).hexdigest()

    def _shard(self, number: int) -> np.ndarray:
        if number not in self._maps:
            try:
                self._maps[number] = np.load(self.shard_files[number], mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise LnlError(f"{self.shard_files[number]}: cannot read the data store ({error}); run `dvc repro`") from None
        return self._maps[number]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows `rows` (any order, repeats allowed) as one in-memory array, read shard by shard in
        ascending order so that a random batch touches each page once."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        if rows.size == 0:
            return out
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"row index out of range for a store of {self.shape[0]} rows")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        shard_of = sorted_rows // self.rows_per_shard
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        for part in np.split(np.arange(rows.size), bounds):
            number = int(shard_of[part[0]])
            out[order[part]] = self._shard(number)[sorted_rows[part] - number * self.rows_per_shard]
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(self.shape[0])))
        return self.take(np.asarray(key))

    def chunks(self, rows: np.ndarray | None = None, *, budget: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """The rows (default: all, in order) in consecutive chunks of about `budget` bytes."""
        rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        for start, stop in row_chunks(rows.size, rows_per(row_bytes, budget)):
            yield self.take(rows[start:stop])

    def load(self) -> np.ndarray:
        """Every row in memory (the in-memory training path)."""
        return self.take(np.arange(self.shape[0]))


SCRATCH = Path(".lnlflow/scratch")
IN_MEMORY_BYTES = 2**30  # decoded arrays above this go to a scratch memory map instead of RAM


def scratch_array(shape: tuple[int, ...], dtype: Any, *, folder: Path = SCRATCH,
                  budget: int = IN_MEMORY_BYTES) -> np.ndarray:
    """A writable array for decoding: in memory up to `budget` bytes, else a memory map of a file in `folder`
    that is unlinked at once (the pages live while the array does, and nothing is left behind by a crash), so
    decoding a million photos never needs them all in RAM."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes <= budget:
        return np.empty(shape, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"decoded-{os.getpid()}-{id(shape)}.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    path.unlink()
    return array
