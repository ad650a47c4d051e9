"""Every stored row is named by its origin: the source row as read and, for file-based sources, its file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from components.config import DataParams
from components.data import load_dataset, stratified_split
from components.data.rows import SPLITS, read_rows, split_codes, write_rows
from components.errors import LnlError
from tests.unit.data.test_datasets_fixtures import (
    write_animal10n,
    write_cifar10,
    write_clothing1m,
    write_food101n,
    write_idx,
    write_image,
    write_mini_webvision,
)


def _files_match_pixels(data, root) -> None:
    """Each row's file decodes (resized like the source) to exactly the stored pixels of that row."""
    rows, files = data.origin()
    assert files is not None and len(files) == data.y.size
    size = data.X.shape[-1]
    for i, name in enumerate(files):
        path = root / name
        assert path.is_file(), name
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB" if data.X.shape[1] == 3 else "L").resize((size, size)))
        stored = data.X[i].transpose(1, 2, 0) if data.X.shape[1] == 3 else data.X[i, 0]
        np.testing.assert_array_equal(stored, pixels.reshape(stored.shape), err_msg=name)


def test_digits_rows_are_positions_in_load_digits():
    from sklearn.datasets import load_digits

    data = load_dataset(DataParams())
    rows, files = data.origin()
    assert files is None and rows.tolist() == list(range(1797))
    np.testing.assert_array_equal(data.y[rows], load_digits().target)


def test_npz_and_csv_rows(tmp_path):
    X = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 0, 1, 0, 1]))
    data = load_dataset(DataParams(source="npz", path=str(tmp_path / "d.npz")))
    assert data.origin()[0].tolist() == list(range(6)) and data.origin()[1] is None
    # a blank line carries no sample: source_row counts data rows (as pandas' index does), not file lines
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n\n3,4,y\n5,6,x\n7,8,y\n")
    data = load_dataset(DataParams(source="csv", path=str(tmp_path / "d.csv")))
    assert data.origin()[0].tolist() == [0, 1, 2, 3] and data.X[1].tolist() == [3, 4]


def test_cifar_and_mnist_rows_are_official_indices(tmp_path):
    y_train = write_cifar10(tmp_path / "c")
    data = load_dataset(DataParams(source="cifar10", root=str(tmp_path / "c")))
    rows, files = data.origin()
    assert files is None
    assert rows[~data.test].tolist() == list(range(len(y_train)))  # the CIFAR training index (CIFAR-N's row)
    assert rows[data.test].tolist() == list(range(data.test.sum()))  # the test batch's own index
    write_idx(tmp_path / "m", n_train=20, n_test=10)
    data = load_dataset(DataParams(source="mnist", root=str(tmp_path / "m")))
    assert data.origin()[0].tolist() == list(range(20)) + list(range(10))


def test_image_folder_rows_name_their_files(tmp_path):
    for c, name in enumerate(["cat", "dog"]):
        for j in range(3):
            write_image(tmp_path / "sub" / name / f"{j}.png", 40 * c + 7 * j)
    data = load_dataset(DataParams(source="image_folder", root=str(tmp_path / "sub")))
    assert data.origin()[1][:2] == ("cat/0.png", "cat/1.png")
    _files_match_pixels(data, tmp_path / "sub")
    flat = tmp_path / "flat"
    for j in range(4):
        write_image(flat / f"img{j}.png", 50 * j)
    (tmp_path / "labels.csv").write_text("file,label\nimg3.png,b\nimg0.png,a\nimg2.png,b\nimg1.png,a\n")
    data = load_dataset(DataParams(source="image_folder", root=str(flat), labels_csv=str(tmp_path / "labels.csv")))
    rows, files = data.origin()
    assert files == ("img3.png", "img0.png", "img2.png", "img1.png") and rows.tolist() == [0, 1, 2, 3]  # CSV rows
    _files_match_pixels(data, flat)


@pytest.mark.parametrize("source", ["clothing1m", "mini_webvision", "animal10n", "food101n"])
def test_web_benchmark_rows_name_their_files(tmp_path, source):
    root = tmp_path / source
    extra = {}
    if source == "clothing1m":
        write_clothing1m(root)
    elif source == "mini_webvision":
        write_mini_webvision(root)
    elif source == "animal10n":
        write_animal10n(root)
    else:
        write_food101n(root, tmp_path / "food-101")
        extra = {"food101_root": str(tmp_path / "food-101")}
    data = load_dataset(DataParams(source=source, root=str(root), image_size=8, **extra))
    rows, files = data.origin()
    kept = np.flatnonzero(~data.test)  # the rows a report or a correction can name
    names = [files[i] for i in kept]
    assert len(set(names)) == len(names)
    for i in kept:
        with Image.open(root / files[i]) as image:
            pixels = np.asarray(image.convert("RGB").resize((8, 8), Image.BILINEAR)).transpose(2, 0, 1)
        np.testing.assert_array_equal(data.X[i], pixels, err_msg=files[i])
    assert rows.min() == 0 and rows.dtype.kind == "i"


def test_row_table_round_trip_and_errors(tmp_path):
    split = {"train": np.array([0, 3]), "val": np.array([1]), "test": np.array([2])}
    codes = split_codes(4, split)
    write_rows(tmp_path / "rows.csv", split=codes, source_row=np.array([10, 11, 12, 13]), file=("a", "b", "c", "d"))
    table = read_rows(tmp_path / "rows.csv")
    assert table.split_of(np.arange(4)) == ["train", "val", "test", "train"] and table.file[3] == "d"
    assert table.source_row.tolist() == [10, 11, 12, 13] and table.has_files
    (tmp_path / "bad.csv").write_text("index,split\n0,train\n")
    with pytest.raises(LnlError, match="not lnlflow's row table"):
        read_rows(tmp_path / "bad.csv")
    with pytest.raises(LnlError, match="cannot read"):
        read_rows(tmp_path / "missing.csv")
    assert SPLITS == ("train", "val", "test")


def test_data_stage_writes_the_exact_split_per_row(tmp_path, monkeypatch):
    """rows.csv agrees with dataset.npz's split indices row for row."""
    import shutil

    from components.stages import data as data_stage
    from tests.conftest import ROOT

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    data_stage.main()
    arrays = np.load(tmp_path / "data/prepared/dataset.npz")
    with open(tmp_path / "data/prepared/rows.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 1797
    for name in SPLITS:
        assert sorted(int(r["row"]) for r in table if r["split"] == name) == sorted(arrays[f"{name}_idx"].tolist())
    assert all(r["source_row"] == r["row"] and r["file"] == "" for r in table)  # digits: positions in load_digits()
    expected = stratified_split(arrays["y"], n_classes=10, val_fraction=0.1, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(np.sort(expected["val"]), np.sort(arrays["val_idx"]))
