"""The on-disk data store, the memory-mapped npy source and streamed rows: same values as in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import DataParams
from components.data import load_dataset
from components.data.store import ArrayStore, chunked, scratch_array, write_store
from components.errors import LnlError
from components.training.streamed import StreamedRows


@pytest.mark.parametrize("dtype, shape", [(np.uint8, (500, 3, 8, 8)), (np.float32, (300, 7))])
def test_store_round_trip_in_shards(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 255, shape) if dtype == np.uint8 else rng.normal(size=shape)).astype(dtype)
    meta = write_store(tmp_path / "X", X, shard_bytes=3000)
    store = ArrayStore(tmp_path / "X")
    assert len(meta["shards"]) >= 3 and store.shape == shape and store.dtype == dtype and store.nbytes == X.nbytes
    rows = rng.integers(0, shape[0], 400)  # any order, repeats, across shards
    np.testing.assert_array_equal(store.take(rows), X[rows])
    np.testing.assert_array_equal(store[5:50], X[5:50])
    np.testing.assert_array_equal(store.load(), X)
    np.testing.assert_array_equal(np.concatenate(list(store.chunks(budget=1000))), X)
    again = write_store(tmp_path / "Y", X, shard_bytes=3000)
    assert again["shards"] == meta["shards"] and ArrayStore(tmp_path / "Y").digest == store.digest
    with pytest.raises(IndexError):
        store.take(np.array([shape[0]]))


def test_a_broken_store_is_one_error(tmp_path):
    with pytest.raises(LnlError, match="not a readable lnlflow data store"):
        ArrayStore(tmp_path / "missing")
    write_store(tmp_path / "X", np.zeros((4, 2), np.float32))
    (tmp_path / "X" / "shard-00000.npy").write_bytes(b"junk")
    with pytest.raises(LnlError, match="shard-00000.npy: cannot read the data store"):
        ArrayStore(tmp_path / "X").take(np.array([0]))


def test_scratch_array_above_budget_is_an_unlinked_memory_map(tmp_path):
    small = scratch_array((10, 3), np.uint8, folder=tmp_path, budget=100)
    assert not isinstance(small, np.memmap)
    big = scratch_array((1000, 3), np.uint8, folder=tmp_path, budget=100)
    big[:] = 7
    assert isinstance(big, np.memmap) and int(big.sum()) == 21000 and not list(tmp_path.iterdir())


def test_npy_source_is_memory_mapped_and_channel_last_is_reordered(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)  # channel-last
    y = np.repeat(np.arange(3), 20)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "trusted.npy", np.arange(60) % 10 == 0)
    np.save(tmp_path / "classes.npy", np.array(["ant", "bee", "cat"]))
    data = load_dataset(DataParams(source="npy", path=str(tmp_path)))
    assert data.classes == ("ant", "bee", "cat") and data.pixel_max == 255.0 and data.trusted.sum() == 6
    assert data.X.shape == (60, 3, 8, 8) and data.X.dtype == np.uint8
    assert isinstance(data.X.base, np.memmap) or isinstance(data.X, np.memmap)  # a view of the file, not a copy
    write_store(tmp_path / "store", data.X)
    np.testing.assert_array_equal(ArrayStore(tmp_path / "store").load(), X.transpose(0, 3, 1, 2))
    np.save(tmp_path / "X.npy", rng.normal(size=(60, 5)))  # float64 features: converted chunk by chunk
    data = load_dataset(DataParams(source="npy", path=str(tmp_path)))
    assert data.X.dtype == np.float32 and np.concatenate(list(chunked(data.X))).shape == (60, 5)


@pytest.mark.parametrize("files, message", [
    ({"X.npy": np.zeros((4, 2))}, "y.npy not found"),
    ({"X.npy": np.zeros((4, 2, 2, 2, 2)), "y.npy": np.zeros(4, int)}, "X must be"),
    ({"X.npy": np.zeros((4, 2)), "y.npy": np.array([0, 1, 3, 0])}, r"class 2 has no samples .*first 3 in row 2 \(y.npy\[2\]\)"),
])
def test_npy_source_errors(tmp_path, files, message):
    for name, array in files.items():
        np.save(tmp_path / name, array)
    with pytest.raises(LnlError, match=message):
        load_dataset(DataParams(source="npy", path=str(tmp_path)))
    with pytest.raises(LnlError, match="expects a folder"):
        load_dataset(DataParams(source="npy", path=str(tmp_path / "X.npy")))


def test_streamed_rows_match_the_tensor_and_prefetch_in_order(tmp_path):
    X = np.random.default_rng(2).integers(0, 255, (200, 1, 4, 4), dtype=np.uint8)
    write_store(tmp_path / "X", X, shard_bytes=500)
    split = np.arange(10, 190)
    streamed = StreamedRows(ArrayStore(tmp_path / "X"), split, torch.device("cpu"))
    tensor = torch.from_numpy(X[split])
    assert len(streamed) == 180 and streamed.shape == tensor.shape and streamed.dtype == torch.uint8
    order = torch.tensor_split(torch.randperm(180, generator=torch.Generator().manual_seed(0)), 9)
    streamed.schedule(order)
    for idx in order:
        assert torch.equal(streamed[idx], tensor[idx])
        assert torch.equal(streamed[idx], tensor[idx])  # asked twice in one step: served again, not re-read
    assert streamed.reads == {"prefetched": 9, "direct": 0, "repeated": 9}
    assert torch.equal(streamed[torch.tensor([3, 3, 0])], tensor[[3, 3, 0]])  # off-schedule: read directly
    assert torch.equal(torch.cat(list(streamed.split(64))), tensor)
    features = StreamedRows(ArrayStore(tmp_path / "X"), split, torch.device("cpu"), scale=255.0)
    assert torch.equal(features[0:5], tensor[0:5].float() / 255.0)
