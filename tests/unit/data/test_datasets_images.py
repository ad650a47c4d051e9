"""Image folders (class sub-folders or a labels CSV) and the web-noisy benchmarks' official layouts."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import DataParams
from components.data import load_dataset, stratified_split
from components.errors import LnlError
from tests.unit.data.test_datasets_fixtures import (
    write_animal10n,
    write_clothing1m,
    write_food101n,
    write_image,
    write_mini_webvision,
)


def _folder_params(root, **extra) -> DataParams:
    return DataParams(source="image_folder", root=str(root), **extra)


def test_class_subfolders_rgb(tmp_path):
    for c, name in enumerate(["cat", "dog"]):
        for j in range(3):
            write_image(tmp_path / name / f"{j}.png", 10 * c + j)
    (tmp_path / "dog" / "notes.txt").write_text("not an image, ignored")
    data = load_dataset(_folder_params(tmp_path))
    assert data.classes == ("cat", "dog") and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.X.shape == (6, 3, 8, 8) and data.X.dtype == np.uint8 and data.pixel_max == 255.0
    assert data.X[4, :, 0, 0].tolist() == [11, 244, 5]  # dog/1.png's colour, channel-first
    assert data.y_given is None and data.test is None and len(data.files) == 6


def test_grey_images_stay_one_channel_and_resize(tmp_path):
    for c in range(2):
        for j in range(2):
            write_image(tmp_path / str(c) / f"{j}.png", 100 + c, size=(8 + j, 8), mode="L")
    with pytest.raises(LnlError, match=r"images have different sizes \(0/0.png: 8×8, 0/1.png: 9×8\); set data.image_size"):
        load_dataset(_folder_params(tmp_path))
    data = load_dataset(_folder_params(tmp_path, image_size=4))
    assert data.X.shape == (4, 1, 4, 4) and int(data.X[2].min()) == 101


def test_flat_folder_with_labels_csv(tmp_path):
    for i in range(8):
        write_image(tmp_path / "img" / f"{i}.png", i)
    rows = ["file,label,trusted,clean"] + [
        f"{i}.png,{'bird' if i % 2 else 'fish'},{1 if i < 2 else 0},{'' if i == 7 else ('fish' if i == 3 else ('bird' if i % 2 else 'fish'))}"
        for i in range(8)
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(_folder_params(tmp_path / "img", labels_csv=str(tmp_path / "labels.csv")))
    assert data.classes == ("bird", "fish")
    assert data.y_given.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert data.y[3] == 1 and data.noise_truth[3] == 1  # given bird, truly fish: a known wrong label
    assert data.noise_truth.tolist() == [0, 0, 0, 1, 0, 0, 0, -1]
    assert data.trusted.tolist() == [True, True] + [False] * 6


def test_a_class_list_orders_the_classes_and_refuses_labels_outside_it(tmp_path):
    for i in range(4):
        write_image(tmp_path / "img" / f"{i}.png", i)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,clean\n0.png,fish,fish\n1.png,bird,fish\n2.png,fish,\n3.png,bird,bird\n")
    params = _folder_params(tmp_path / "img", labels_csv=str(csv), classes=("fish", "bird"))
    data = load_dataset(params)
    assert data.classes == ("fish", "bird") and data.y_given.tolist() == [0, 1, 0, 1]
    assert data.noise_truth.tolist() == [0, 1, -1, 0]
    csv.write_text("file,label\n0.png,fish\n1.png,Bird\n")
    with pytest.raises(LnlError, match=r"line 3: label 'Bird' is not in the class list \(fish, bird\)"):
        load_dataset(params)
    csv.write_text("file,label,clean\n0.png,fish,fish\n1.png,bird,cat\n")
    with pytest.raises(LnlError, match=r"line 3: clean 'cat' is not in the class list"):
        load_dataset(params)
    with pytest.raises(ValueError, match="data.classes must name at least 2 distinct.*repeated: fish"):
        DataParams(source="image_folder", root="x", labels_csv="a.csv", classes=("fish", "fish"))
    with pytest.raises(ValueError, match="data.classes lists the classes of data.labels_csv"):
        DataParams(source="image_folder", root="x", classes=("a", "b"))


def test_a_class_too_small_to_split_is_named(tmp_path):
    for c, name in enumerate(["cat", "dog"]):
        for j in range(3 if c else 1):
            write_image(tmp_path / name / f"{j}.png", 10 * c + j)
    data = load_dataset(_folder_params(tmp_path))
    with pytest.raises(LnlError, match=r"class 0 \('cat'\) has only 1 samples"):
        stratified_split(data.y, n_classes=2, val_fraction=0.1, test_fraction=0.2, seed=0, class_names=data.classes)


def test_labels_csv_errors(tmp_path):
    write_image(tmp_path / "img" / "a.png", 1)
    write_image(tmp_path / "img" / "b.png", 2)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    csv = tmp_path / "labels.csv"
    params = _folder_params(tmp_path / "img", labels_csv=str(csv))
    csv.write_text("file,label\na.png,0\nmissing.png,1\n")
    with pytest.raises(LnlError, match="1 listed image.* not found .* e.g. missing.png"):
        load_dataset(params)
    csv.write_text("file,label\na.png,0\nbroken.png,1\n")
    with pytest.raises(LnlError, match=r"broken.png: not a readable image"):
        load_dataset(params)
    csv.write_text("file,label,clean\na.png,0,0\nb.png,1,7\n")
    with pytest.raises(LnlError, match=r"line 3: clean '7' is not in the class list \(0, 1\)"):
        load_dataset(params)
    csv.write_text("file,label\na.png,0\nb.png,1\na.png,1\n")
    with pytest.raises(LnlError, match=r"lines 2 and 4 both list 'a.png' \(one row per image\)"):
        load_dataset(params)
    csv.write_text("file,klass\na.png,0\n")
    with pytest.raises(LnlError, match="lacks column.* label"):
        load_dataset(params)
    with pytest.raises(LnlError, match="data.root: folder not found"):
        load_dataset(_folder_params(tmp_path / "absent"))
    with pytest.raises(LnlError, match="has no class sub-folders .*data.labels_csv"):
        load_dataset(_folder_params(tmp_path / "img"))


def test_clothing1m_official_splits(tmp_path):
    keys = write_clothing1m(tmp_path)
    data = load_dataset(DataParams(source="clothing1m", root=str(tmp_path), image_size=6))
    assert data.X.shape == (56, 3, 6, 6) and data.n_classes == 14 and data.classes[0] == "cloth0"
    assert data.trusted.sum() == 14 and data.test.sum() == 14
    assert data.noise_truth[:28].tolist().count(-1) == 14  # half the training images have no clean label
    assert data.noise_truth[0] == 1 and data.y[0] == 1 and data.y_given[0] == 0  # the known flip
    assert data.files[0][0] == "noisy_label_kv.txt" and any(name == keys["test"][0] for name, _ in data.files)
    split = stratified_split(data.y, n_classes=14, val_fraction=0.1, test_fraction=0.2, seed=0, trusted=data.trusted, test=data.test)
    np.testing.assert_array_equal(split["val"], np.arange(28, 42))
    np.testing.assert_array_equal(split["test"], np.arange(42, 56))
    np.testing.assert_array_equal(split["train"], np.arange(28))


def test_clothing1m_needs_image_size_and_its_files(tmp_path):
    with pytest.raises(ValueError, match="needs data.image_size"):
        DataParams(source="clothing1m", root=str(tmp_path))
    write_clothing1m(tmp_path)
    (tmp_path / "clean_test_key_list.txt").unlink()
    with pytest.raises(LnlError, match="clean_test_key_list.txt not found"):
        load_dataset(DataParams(source="clothing1m", root=str(tmp_path), image_size=8))


def test_mini_webvision_first_50_classes(tmp_path):
    write_mini_webvision(tmp_path)
    data = load_dataset(DataParams(source="mini_webvision", root=str(tmp_path), image_size=8))
    assert data.n_classes == 50 and data.X.shape[0] == 150 + 50  # class 50 dropped from train and test
    assert data.test.sum() == 50 and data.trusted is None and (data.noise_truth[:150] == -1).all()
    assert any(name.startswith("val_images_256/ILSVRC2012_val_") for name, _ in data.files)


def test_animal10n_names_give_labels(tmp_path):
    write_animal10n(tmp_path)
    data = load_dataset(DataParams(source="animal10n", root=str(tmp_path), image_size=8))
    assert data.X.shape == (40, 3, 8, 8) and data.test.sum() == 10
    assert np.bincount(data.y[:30]).tolist() == [3] * 10 and int(data.X[3, 0, 0, 0]) == 20
    (tmp_path / "testing" / "cat.jpg").write_bytes(b"")
    with pytest.raises(LnlError, match="testing/cat.jpg is not named <label>_<index>.jpg"):
        load_dataset(DataParams(source="animal10n", root=str(tmp_path), image_size=8))


def test_food101n_verified_subsets_and_food101_test(tmp_path):
    write_food101n(tmp_path / "Food-101N", tmp_path / "food-101")
    params = DataParams(source="food101n", root=str(tmp_path / "Food-101N"), food101_root=str(tmp_path / "food-101"), image_size=8)
    data = load_dataset(params)
    assert data.classes == ("apple_pie", "baby_back_ribs", "baklava")
    assert data.X.shape[0] == 9 + 2 + 3  # training minus verified_val; val = verified-correct only; Food-101 test
    assert data.trusted.sum() == 2 and data.test.sum() == 3 and data.y[data.test].tolist() == [0, 1, 2]
    assert data.noise_truth[:9].tolist() == [0, 1, -1] * 3
    with pytest.raises(ValueError, match="needs data.food101_root"):
        DataParams(source="food101n", root=str(tmp_path), image_size=8)


def test_params_reject_fields_a_source_does_not_use(tmp_path):
    with pytest.raises(ValueError, match="source 'cifar10' needs data.root"):
        DataParams(source="cifar10")
    with pytest.raises(ValueError, match=r"data.image_size, data.labels_csv not used by source 'cifar10'"):
        DataParams(source="cifar10", root="x", image_size=32, labels_csv="a.csv")
    with pytest.raises(ValueError, match="data.root not used by source 'digits'"):
        DataParams(root="x")
