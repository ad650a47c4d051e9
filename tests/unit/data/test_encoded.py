"""Photos kept encoded: seeded random-resized crops for training, the centre view for everything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.data.encoded import (EncodedImages, EncodedStore, crop_box, decode_one, eval_box, open_store,
                                     write_encoded_store)
from components.data.store import write_store


def _photos(root, n: int = 12) -> list[str]:
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        w, h = int(rng.integers(20, 48)), int(rng.integers(20, 48))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
        names.append(f"{i}.png")
    return names


@pytest.fixture()
def store(tmp_path):
    names = _photos(tmp_path)
    images = EncodedImages([str(tmp_path / n) for n in names], size=16, channels=3, digest="d")
    write_encoded_store(tmp_path / "X", images)
    opened = open_store(tmp_path / "X")
    yield opened
    opened.close()


def test_crop_boxes_stay_inside_and_follow_the_area_and_aspect_rule():
    rng = np.random.default_rng(1)
    for _ in range(200):
        w, h = int(rng.integers(8, 300)), int(rng.integers(8, 300))
        left, top, right, bottom = crop_box(w, h, rng)
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    assert crop_box(400, 10, np.random.default_rng(0))[2] - crop_box(400, 10, np.random.default_rng(0))[0] <= 400
    new, box = eval_box(64, 32, 16)
    assert new == (37, 18) and box == (10, 1, 26, 17)  # shorter side to 16 / 0.875, then the centre 16 × 16


def test_training_crops_are_seeded_per_seed_epoch_and_row(store, tmp_path):
    assert isinstance(store, EncodedStore) and store.shape == (12, 3, 16, 16)
    rows = np.arange(12)
    a = store.take_crops(rows, seed=3, epoch=1)
    assert a.shape == (12, 3, 16, 16) and a.dtype == np.uint8
    np.testing.assert_array_equal(store.take_crops(rows[::-1], seed=3, epoch=1), a[::-1])  # order-free
    assert not np.array_equal(store.take_crops(rows, seed=3, epoch=2), a)
    assert not np.array_equal(store.take_crops(rows, seed=4, epoch=1), a)
    pool = EncodedStore(store.folder, store.meta, workers=2)  # two worker processes decode the same pixels
    try:
        np.testing.assert_array_equal(pool.take_crops(rows, seed=3, epoch=1), a)
        np.testing.assert_array_equal(pool.take(rows), store.take(rows))
        assert pool._pool is not None
    finally:
        pool.close()


def test_the_evaluation_view_is_resize_then_centre_crop(store, tmp_path):
    with Image.open(tmp_path / "5.png") as image:
        new, box = eval_box(*image.size, 16)
        expected = np.asarray(image.convert("RGB").resize(new, Image.BILINEAR).crop(box)).transpose(2, 0, 1)
    np.testing.assert_array_equal(store.take(np.array([5]))[0], expected)
    np.testing.assert_array_equal(decode_one(str(tmp_path / "5.png"), 16, "RGB", None), expected)
    np.testing.assert_array_equal(store[4:6][1], expected)


def test_open_store_tells_the_two_kinds_apart(tmp_path):
    write_store(tmp_path / "arrays", np.zeros((3, 2), np.float32))
    assert type(open_store(tmp_path / "arrays")).__name__ == "ArrayStore"


def test_streamed_training_batches_are_crops_and_other_reads_the_centre_view(store):
    import torch

    from components.training.streamed import StreamedRows

    split = np.arange(2, 12)
    rows = StreamedRows(store, split, torch.device("cpu"), crop_seed=5)
    batch = torch.tensor([4, 0, 7])
    rows.schedule([batch], epoch=3)
    np.testing.assert_array_equal(rows[batch].numpy(), store.take_crops(split[[4, 0, 7]], seed=5, epoch=3))
    np.testing.assert_array_equal(rows[torch.tensor([1, 2])].numpy(), store.take(split[[1, 2]]))  # not scheduled
    np.testing.assert_array_equal(torch.cat(list(rows.split(4))).numpy(), store.take(split))  # predictions


def test_web_benchmarks_and_image_folders_keep_their_files(tmp_path):
    from components.config import DataParams
    from components.data import load_dataset
    from tests.unit.data.test_datasets_fixtures import write_clothing1m, write_image

    write_clothing1m(tmp_path / "c1m")
    data = load_dataset(DataParams(source="clothing1m", root=str(tmp_path / "c1m"), image_size=8, keep_encoded=True))
    assert isinstance(data.X, EncodedImages) and data.X.shape == (56, 3, 8, 8)
    assert all(Path(p).is_file() for p in data.X.paths) and data.test.sum() == 14
    assert data.origin()[1][0] == "images/0/00/train0_0.jpg"
    write_image(tmp_path / "grey" / "a" / "0.png", 10, mode="L")
    write_image(tmp_path / "grey" / "b" / "0.png", 20, mode="L")
    grey = load_dataset(DataParams(source="image_folder", root=str(tmp_path / "grey"), image_size=8, keep_encoded=True))
    assert grey.X.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="keep_encoded needs data.image_size"):
        DataParams(source="image_folder", root=str(tmp_path), keep_encoded=True)
    with pytest.raises(ValueError, match="data.keep_encoded not used by source 'digits'"):
        DataParams(keep_encoded=True, image_size=8)
