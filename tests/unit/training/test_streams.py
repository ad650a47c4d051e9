"""Named random streams: independent across purposes and run seeds, reproducible, used for every derived seed."""

from __future__ import annotations

import torch

from components.methods.meta_common import unlabelled_subset
from components.training.loop import batches
from components.training.streams import numpy_generator, stream_seed, torch_generator


def test_streams_are_reproducible_and_distinct_across_purposes_and_seeds():
    assert stream_seed(3, "a") == stream_seed(3, "a")
    seeds = {stream_seed(s, p) for s in range(4) for p in ("a", "b", "c")}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)
    assert all(0 <= stream_seed(s, "gmm", bits=32) < 2**32 for s in range(4))
    # the old offsets: seed s's "+1" stream was seed s+1's base stream; named streams never coincide that way
    assert stream_seed(0, "clidmu.meta_batches") != stream_seed(1, "stage2.batches")
    draw = lambda seed: torch.rand(4, generator=torch_generator(seed, "x"))  # noqa: E731
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    assert numpy_generator(0, "x").integers(0, 2**31) == numpy_generator(0, "x").integers(0, 2**31)


def test_clidmu_meta_set_is_not_the_first_batches_of_stage_two():
    """Before: unlabelled_subset(n, size, seed) and the loader's epoch-1 order both came from Generator(seed)."""
    n, size, seed = 1200, 1000, 0
    first_batches = torch.cat(batches(n, 64, torch.Generator().manual_seed(seed), torch.device("cpu")))[:size]
    assert torch.equal(unlabelled_subset(n, size, seed=seed), first_batches.sort().values)  # the old collision
    meta = unlabelled_subset(n, size, seed=stream_seed(seed, "clidmu.meta_set"))
    loader = torch.cat(batches(n, 64, torch.Generator().manual_seed(stream_seed(seed, "stage2.batches")),
                               torch.device("cpu")))[:size]
    assert not torch.equal(meta, loader.sort().values)
    overlap = len(set(meta.tolist()) & set(loader.tolist()))
    assert overlap < size - 50  # ≈ size²/n expected by chance (833), never the whole set
