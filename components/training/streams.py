"""Named random streams: one independent seed per (run seed, purpose).

Offsetting a run seed (seed + 1, seed + 2, ...) for a second generator makes seed s reuse seed s + 1's streams,
and two generators seeded alike (a loader's order and a subset drawn with the same seed) return the same draws.
`stream_seed(seed, purpose)` instead hashes the purpose into a numpy SeedSequence entropy pool together with the
seed, so every (seed, purpose) pair gets its own statistically independent stream.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_seed(seed: int, purpose: str, *, bits: int = 63) -> int:
    """A seed for the stream `purpose` of run seed `seed` (non-negative, below 2**bits; bits ≤ 63)."""
    if not 1 <= bits <= 63:
        raise ValueError(f"bits must be in [1, 63], got {bits}")
    tag = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    state = np.random.SeedSequence([int(seed), tag]).generate_state(1, np.uint64)[0]
    return int(state) & ((1 << bits) - 1)


def torch_generator(seed: int, purpose: str, device="cpu"):
    """A torch generator (on `device`) for the named stream (torch is imported here: the noise stage uses
    `stream_seed` without it)."""
    import torch

    return torch.Generator(device=device).manual_seed(stream_seed(seed, purpose))


def numpy_generator(seed: int, purpose: str) -> np.random.Generator:
    """A numpy generator for the named stream."""
    return np.random.default_rng(stream_seed(seed, purpose))
