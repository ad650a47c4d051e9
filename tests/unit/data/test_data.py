"""Tests for components.data: the sources, their checks, and the stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.config import DataParams
from components.data import load_dataset, stratified_split
from components.errors import LnlError


def _npz(tmp_path: Path, name: str = "data.npz", **arrays) -> DataParams:
    path = tmp_path / name
    np.savez(path, **arrays)
    return DataParams(source="npz", path=str(path))


def _csv(tmp_path: Path, text: str, *, label_column: str = "label", name: str = "data.csv") -> DataParams:
    path = tmp_path / name
    path.write_text(text)
    return DataParams(source="csv", path=str(path), label_column=label_column)


def _load_error(cfg: DataParams) -> str:
    with pytest.raises(LnlError) as info:
        load_dataset(cfg)
    return str(info.value)


# --- digits ---------------------------------------------------------------------------------------------------


def test_digits_source():
    data = load_dataset(DataParams(source="digits"))
    assert data.X.shape == (1797, 1, 8, 8)
    assert data.X.dtype == np.float32
    assert data.X.min() == 0.0 and data.X.max() == 1.0
    assert data.pixel_max == 16.0
    assert data.y.dtype == np.int64 and data.y.shape == (1797,)
    assert data.n_classes == 10 and data.classes == tuple(str(c) for c in range(10))
    assert data.is_image
    assert set(np.unique(data.y)) == set(range(10))


# --- npz ------------------------------------------------------------------------------------------------------


def test_npz_features(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    y = np.arange(30) % 3
    data = load_dataset(_npz(tmp_path, "feats.npz", X=X, y=y))
    assert data.name == "feats"
    assert data.X.shape == (30, 5) and data.X.dtype == np.float32
    np.testing.assert_allclose(data.X, X.astype(np.float32))
    np.testing.assert_array_equal(data.y, y)
    assert data.classes == ("0", "1", "2")
    assert not data.is_image and data.pixel_max is None


def test_npz_uint8_images_are_scaled(tmp_path):
    X = np.zeros((12, 6, 7), dtype=np.uint8)
    X[:, 0, 0] = 255
    X[:, 1, 1] = 51
    y = np.arange(12) % 2
    data = load_dataset(_npz(tmp_path, X=X, y=y))
    assert data.X.shape == (12, 1, 6, 7) and data.X.dtype == np.float32
    assert data.is_image and data.pixel_max == 255.0
    assert data.X[0, 0, 0, 0] == 1.0
    assert data.X[0, 0, 1, 1] == pytest.approx(0.2)
    assert data.X.min() == 0.0


def test_npz_channel_last_images_become_channel_first(tmp_path):
    X = np.random.default_rng(1).random((8, 5, 5, 3))
    data = load_dataset(_npz(tmp_path, X=X, y=np.arange(8) % 2))
    assert data.X.shape == (8, 3, 5, 5)
    np.testing.assert_allclose(data.X[2, 1], X[2, :, :, 1].astype(np.float32))


def test_npz_class_names(tmp_path):
    y = np.array([0, 1, 2, 2, 1, 0])
    data = load_dataset(_npz(tmp_path, X=np.ones((6, 2)), y=y, classes=np.array(["cat", "dog", "eel"])))
    assert data.classes == ("cat", "dog", "eel")
    np.testing.assert_array_equal(data.y, y)


def test_npz_string_labels_map_to_sorted_names(tmp_path):
    y = np.array(["dog", "cat", "dog", "eel"])
    data = load_dataset(_npz(tmp_path, X=np.ones((4, 2)), y=y))
    assert data.classes == ("cat", "dog", "eel")
    np.testing.assert_array_equal(data.y, [1, 0, 1, 2])


def test_npz_whole_float_labels(tmp_path):
    data = load_dataset(_npz(tmp_path, X=np.ones((4, 2)), y=np.array([0.0, 1.0, 1.0, 0.0])))
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])
    assert data.y.dtype == np.int64


# --- csv ------------------------------------------------------------------------------------------------------


def test_csv_numeric_labels(tmp_path):
    text = "a,b,label\n0.5,1,0\n1.5,2,1\n2.5,3,2\n3.5,4,1\n"
    data = load_dataset(_csv(tmp_path, text))
    np.testing.assert_allclose(data.X, [[0.5, 1], [1.5, 2], [2.5, 3], [3.5, 4]])
    assert data.X.dtype == np.float32
    np.testing.assert_array_equal(data.y, [0, 1, 2, 1])
    assert data.classes == ("0", "1", "2")


def test_csv_string_labels_and_label_column_choice(tmp_path):
    text = "species,x,y\nsetosa,1,2\nvirginica,3,4\nsetosa,5,6\nversicolor,7,8\n"
    data = load_dataset(_csv(tmp_path, text, label_column="species"))
    assert data.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(data.y, [0, 2, 0, 1])
    np.testing.assert_allclose(data.X, [[1, 2], [3, 4], [5, 6], [7, 8]])


def test_csv_label_column_in_the_middle(tmp_path):
    text = "f1,target,f2\n1,1,10\n2,0,20\n"
    data = load_dataset(_csv(tmp_path, text, label_column="target"))
    np.testing.assert_allclose(data.X, [[1, 10], [2, 20]])
    np.testing.assert_array_equal(data.y, [1, 0])


# --- bad inputs -----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    message = _load_error(DataParams(source="npz", path=str(tmp_path / "absent.npz")))
    assert "data.path" in message and "not found" in message and "absent.npz" in message


def test_wrong_suffix(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,label\n1,0\n")
    message = _load_error(DataParams(source="npz", path=str(path)))
    assert ".npz" in message and "data.csv" in message


def test_npz_without_y(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones((4, 2))))
    assert "y" in message and "lacks" in message


def test_corrupt_npz(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(np.random.default_rng(0).bytes(512))
    message = _load_error(DataParams(source="npz", path=str(path)))
    assert "broken.npz" in message and "not a valid .npz file" in message


def test_truncated_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, X=np.ones((50, 4)), y=np.arange(50) % 2)
    path = tmp_path / "cut.npz"
    path.write_bytes(good.read_bytes()[:200])
    message = _load_error(DataParams(source="npz", path=str(path)))
    assert "cut.npz" in message


def test_npz_non_numeric_x(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1])))
    assert "numeric" in message


def test_npz_bad_x_rank(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones(4), y=np.array([0, 1, 0, 1])))
    assert "shape" in message


def test_csv_missing_label_column(tmp_path):
    message = _load_error(_csv(tmp_path, "a,b,class\n1,2,0\n3,4,1\n"))
    assert "data.label_column" in message and "'label'" in message and "class" in message


def test_csv_non_numeric_feature(tmp_path):
    message = _load_error(_csv(tmp_path, "a,b,label\n1,2,0\n3,oops,1\n"))
    assert "non-numeric" in message and "oops" in message


def test_csv_ragged_row(tmp_path):
    message = _load_error(_csv(tmp_path, "a,b,label\n1,2,0\n3,4\n"))
    assert "line 3" in message and "2 fields" in message and "expected 3" in message


def test_csv_without_rows(tmp_path):
    assert "no data rows" in _load_error(_csv(tmp_path, "a,b,label\n"))


def test_labels_outside_class_range(tmp_path):
    y = np.array([0, 1, 2, 5, 1, 0])
    message = _load_error(_npz(tmp_path, X=np.ones((6, 2)), y=y, classes=np.array(["a", "b", "c"])))
    assert "outside [0, 3)" in message and "5" in message and "row 3" in message


def test_negative_labels(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones((4, 2)), y=np.array([0, 1, -1, 1])))
    assert ">= 0" in message and "-1" in message


def test_negative_labels_with_class_names(tmp_path):
    y = np.array([0, 1, -1, 1])
    message = _load_error(_npz(tmp_path, X=np.ones((4, 2)), y=y, classes=np.array(["a", "b"])))
    assert "outside [0, 2)" in message and "-1" in message


def test_empty_class(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones((4, 2)), y=np.array([0, 2, 0, 2])))
    assert "class 1" in message and "no samples" in message


def test_a_stray_label_is_named_with_its_row_not_the_empty_classes(tmp_path):
    y = np.arange(300) % 10
    y[123] = 99
    message = _load_error(_npz(tmp_path, X=np.ones((300, 2)), y=y))
    assert message == (f"data.path {tmp_path / 'data.npz'}: integer labels are class indices, but classes 10..98 "
                       "have no samples (labels present: 0..9, 99; first 99 in row 123 (y[123])); number the "
                       "classes 0..C-1 or use class names")
    names = np.array([f"c{i}" for i in range(10)])
    named = _load_error(_npz(tmp_path, "named.npz", X=np.ones((300, 2)), y=y, classes=names))
    assert named == (f"data.path {tmp_path / 'named.npz'}: label 99 in row 123 (y[123]) is outside [0, 10): "
                     "the file names 10 classes (c0, c1, c2, …, c9)")
    rows = "".join(f"{i},{99 if i == 7 else i % 3}\n" for i in range(12))
    assert "first 99 in line 9)" in _load_error(_csv(tmp_path, "a,label\n" + rows))


def test_nan_features(tmp_path):
    X = np.ones((4, 2))
    X[2, 1] = np.nan
    message = _load_error(_npz(tmp_path, X=X, y=np.array([0, 1, 0, 1])))
    assert "NaN" in message


def test_single_class(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones((4, 2)), y=np.zeros(4, dtype=int)))
    assert "at least 2 classes" in message


def test_fractional_labels(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones((3, 2)), y=np.array([0.0, 1.5, 1.0])))
    assert "whole numbers" in message


def test_row_count_mismatch(tmp_path):
    message = _load_error(_npz(tmp_path, X=np.ones((5, 2)), y=np.array([0, 1, 0, 1])))
    assert "5 feature rows" in message and "4 labels" in message


# --- stratified_split -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    counts = [100, 60, 40]
    return np.random.default_rng(3).permutation(np.repeat(np.arange(3), counts))


def _split(y, seed=0, val=0.1, test=0.2):
    return stratified_split(y, n_classes=int(y.max()) + 1, val_fraction=val, test_fraction=test, seed=seed)


def test_split_is_a_partition(labels):
    parts = _split(labels)
    assert set(parts) == {"train", "val", "test"}
    joined = np.concatenate(list(parts.values()))
    assert len(joined) == len(labels)
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(labels)))
    for name, idx in parts.items():
        assert np.all(np.diff(idx) > 0), f"{name} is not sorted and unique"


def test_split_per_class_proportions(labels):
    parts = _split(labels)
    for c, n in enumerate([100, 60, 40]):
        assert (labels[parts["test"]] == c).sum() == round(0.2 * n)
        assert (labels[parts["val"]] == c).sum() == round(0.1 * n)
        assert (labels[parts["train"]] == c).sum() == n - round(0.2 * n) - round(0.1 * n)


def test_split_deterministic_per_seed(labels):
    first, again, other = _split(labels, seed=5), _split(labels, seed=5), _split(labels, seed=6)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["test"], other["test"])


def test_split_small_class_gets_one_each():
    y = np.array([0] * 20 + [1] * 3)
    parts = _split(y)
    for name in ("train", "val", "test"):
        assert (y[parts[name]] == 1).sum() == 1


def test_split_too_small_class():
    y = np.array([0] * 20 + [1] * 2)
    with pytest.raises(LnlError, match="class 1 has only 2 samples"):
        _split(y)


def test_a_class_whose_rows_are_all_trusted_names_the_cause():
    y = np.array([0, 1] * 10)
    with pytest.raises(LnlError) as error:
        stratified_split(y, n_classes=2, val_fraction=0.1, test_fraction=0.2, seed=0, trusted=y == 0)
    assert str(error.value) == ("class 0 has only 0 samples besides its 10 trusted ones (the validation split): too "
                                "few for a train/test split; mark fewer of its rows trusted")
    with pytest.raises(LnlError) as error:
        stratified_split(y, n_classes=2, val_fraction=0.1, test_fraction=0.2, seed=0, test=y == 1)
    assert str(error.value) == ("class 1 has only 0 samples besides its 10 in the official test set: too few for a "
                                "train/val/test split")


def test_npz_trusted_rows_become_the_validation_split(tmp_path):
    from components.config import DataParams
    from components.data import load_dataset, stratified_split

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    trusted = np.zeros(60, dtype=bool)
    trusted[[0, 1, 20, 21, 40, 41]] = True
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(60, 4)), y=y, trusted=trusted)
    data = load_dataset(DataParams(source="npz", path=str(tmp_path / "d.npz")))
    split = stratified_split(data.y, n_classes=3, val_fraction=0.1, test_fraction=0.2, seed=0, trusted=data.trusted)
    assert split["val"].tolist() == [0, 1, 20, 21, 40, 41]
    assert not set(split["val"]) & (set(split["train"]) | set(split["test"]))
    assert len(split["train"]) + len(split["test"]) == 54


def test_npz_trusted_mask_is_checked(tmp_path):
    from components.config import DataParams
    from components.data import load_dataset
    from components.errors import LnlError

    np.savez(tmp_path / "d.npz", X=np.zeros((6, 2)), y=np.array([0, 0, 0, 1, 1, 1]), trusted=np.array([2, 0, 0, 0, 0, 0]))
    with pytest.raises(LnlError, match="'trusted' must hold booleans or 0/1"):
        load_dataset(DataParams(source="npz", path=str(tmp_path / "d.npz")))
