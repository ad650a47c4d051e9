"""Training rows read from the on-disk store batch by batch, for data larger than memory (runtime.data_on_device).

`StreamedRows` stands where a device tensor of one split would: indexing it with the positions of a batch
(`rows[idx]`), slicing it or splitting it returns those rows as a tensor on the training device, exactly the values
the in-memory tensor would hold. The training loop announces each epoch's batch order (`schedule`), and a
background thread reads the next batches from the memory-mapped shards (pinned memory on CUDA) while the current
step computes, so every method, view and per-sample record is the same code on both paths.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from components.data.store import ArrayStore

TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.float32): torch.float32,
                np.dtype(np.float64): torch.float64, np.dtype(np.int64): torch.int64}


class StreamedRows:
    """The stored rows `rows` (one split) of `store`, read on demand onto `device`; `scale` divides after reading
    (uint8 feature rows become floats in [0, 1], as the in-memory path does)."""

    def __init__(self, store: ArrayStore, rows: np.ndarray, device: torch.device, *, scale: float | None = None,
                 crop_seed: int | None = None, prefetch: int = 4, workers: int = 2):
        self.store, self.rows, self.device, self.scale = store, np.asarray(rows, dtype=np.int64), device, scale
        self.crop_seed, self.epoch = crop_seed, 0  # photos kept encoded: scheduled batches are seeded crops
        self.prefetch = prefetch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lnlflow-read")
        self._ahead: deque[tuple[np.ndarray, Future]] = deque()
        self._queue: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self.reads = {"prefetched": 0, "direct": 0, "repeated": 0}
        self._last: tuple[np.ndarray, Tensor] | None = None  # a batch asked for twice in one step (meta methods)

    # ------------------------------------------------------------------ tensor-like surface
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.store.shape[1:]))

    @property
    def ndim(self) -> int:
        return self.store.ndim

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.scale is not None else TORCH_DTYPES[self.store.dtype]

    def numel(self) -> int:
        return int(np.prod(tuple(self.shape), dtype=np.int64))

    def __getitem__(self, key) -> Tensor:
        positions = self._positions(key)
        if self._last is not None and np.array_equal(self._last[0], positions):
            self.reads["repeated"] += 1
            return self._last[1]
        values = self._take_prefetched(positions)
        if values is None:
            self.reads["direct"] += 1
            values = self._to_device(self._read(positions))
        else:
            self.reads["prefetched"] += 1
        self._last = (positions, values)
        return values

    def split(self, size: int) -> Iterator[Tensor]:
        for start in range(0, len(self.rows), size):
            yield self[start:start + size]

    # ------------------------------------------------------------------ prefetching
    def schedule(self, order: Sequence[Tensor], *, epoch: int = 0) -> None:
        """The batches (positions in this split) the loop will ask for next, in order; reads start ahead. With an
        encoded store and a crop seed, these batches are the training view of `epoch` (random-resized crops)."""
        with self._lock:
            self.epoch = epoch
            self._ahead.clear()
            self._queue = deque(np.asarray(idx.detach().cpu(), dtype=np.int64) for idx in order)
        self._fill()

    def _fill(self) -> None:
        with self._lock:
            while self._queue and len(self._ahead) < self.prefetch:
                positions = self._queue.popleft()
                self._ahead.append((positions, self._pool.submit(self._read, positions, True)))

    def _take_prefetched(self, positions: np.ndarray) -> Tensor | None:
        with self._lock:
            if not self._ahead or not np.array_equal(self._ahead[0][0], positions):
                return None
            _, future = self._ahead.popleft()
        self._fill()
        return self._to_device(future.result())

    # ------------------------------------------------------------------ reading
    def _positions(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(*key.indices(len(self.rows)))
        if isinstance(key, Tensor):
            return key.detach().cpu().numpy().astype(np.int64, copy=False).reshape(-1)
        return np.asarray(key, dtype=np.int64).reshape(-1)

    def _read(self, positions: np.ndarray, scheduled: bool = False) -> Tensor:
        rows = self.rows[positions]
        if scheduled and self.crop_seed is not None:
            values = torch.from_numpy(self.store.take_crops(rows, seed=self.crop_seed, epoch=self.epoch))
        else:
            values = torch.from_numpy(self.store.take(rows))
        if self.scale is not None:
            values = values.float() / self.scale
        if self.device.type == "cuda":
            values = values.pin_memory()
        return values

    def _to_device(self, values: Tensor) -> Tensor:
        return values.to(self.device, non_blocking=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
