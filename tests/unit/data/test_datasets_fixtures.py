"""Writers of tiny datasets in each official on-disk format (shared by the test_datasets_* modules; no tests here)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar10(root: Path, *, per_class_train: int = 2, per_class_test: int = 1, seed: int = 0) -> np.ndarray:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta; returns the training labels in order."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    y_train = rng.permutation(np.repeat(np.arange(10), per_class_train))
    y_test = np.repeat(np.arange(10), per_class_test)
    for i, labels in enumerate(np.array_split(y_train, 5), start=1):
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"x", b"labels": labels.tolist(), b"data": _pixels(rng, len(labels))})
    _dump(folder / "test_batch", {b"labels": y_test.tolist(), b"data": _pixels(rng, len(y_test))})
    _dump(folder / "batches.meta", {b"label_names": [f"class{c}".encode() for c in range(10)], b"num_vis": 3072})
    return y_train


def write_cifar100(root: Path, *, seed: int = 0) -> np.ndarray:
    """cifar-100-python/ with train, test, meta (fine labels); two training and one test image per class."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    y_train, y_test = rng.permutation(np.repeat(np.arange(100), 2)), np.arange(100)
    for name, labels in (("train", y_train), ("test", y_test)):
        _dump(folder / name, {b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(), b"data": _pixels(rng, len(labels))})
    _dump(folder / "meta", {b"fine_label_names": [f"fine{c}".encode() for c in range(100)], b"coarse_label_names": []})
    return y_train


def _pixels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path: Path, content: dict) -> None:
    path.write_bytes(pickle.dumps(content, protocol=4))


def write_idx(root: Path, *, n_train: int = 20, n_test: int = 10, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The four MNIST idx files (big-endian headers); returns (train images, train labels)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    x_train, x_test = (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in (n_train, n_test))
    y_train, y_test = np.arange(n_train, dtype=np.uint8) % 10, np.arange(n_test, dtype=np.uint8) % 10
    for name, array, magic in (
        ("train-images-idx3-ubyte", x_train, 2051), ("train-labels-idx1-ubyte", y_train, 2049),
        ("t10k-images-idx3-ubyte", x_test, 2051), ("t10k-labels-idx1-ubyte", y_test, 2049),
    ):
        raw = np.array([magic, *array.shape], dtype=">i4").tobytes() + array.tobytes()
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)
    return x_train, y_train


def write_image(path: Path, value: int, *, size: tuple[int, int] = (8, 8), mode: str = "RGB") -> None:
    """A tiny image of one colour (value encodes which file it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, colour).save(path)


def write_clothing1m(root: Path) -> dict[str, list[str]]:
    """14 classes, two noisy-train images per class (half with a clean label), one clean val and test image each."""
    keys: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    noisy, clean = [], []
    for c in range(14):
        for j in range(2):
            key = f"images/{c}/{j:02d}/train{c}_{j}.jpg"
            keys["train"].append(key)
            noisy.append(f"{key} {c}")
            if j == 0:  # every other training image also has a clean label; class 0's is different (a known flip)
                clean.append(f"{key} {(c + 1) % 14 if c == 0 else c}")
        for role in ("val", "test"):
            key = f"images/{c}/99/{role}{c}.jpg"
            keys[role].append(key)
            clean.append(f"{key} {c}")
    for key in keys["train"] + keys["val"] + keys["test"]:
        write_image(root / key, len(key) % 256, size=(10, 12))
    (root / "noisy_label_kv.txt").write_text("\n".join(noisy) + "\n")
    (root / "clean_label_kv.txt").write_text("\n".join(clean) + "\n")
    (root / "noisy_train_key_list.txt").write_text("\n".join(keys["train"]) + "\n")
    (root / "clean_train_key_list.txt").write_text("")
    (root / "clean_val_key_list.txt").write_text("\n".join(keys["val"]) + "\n")
    (root / "clean_test_key_list.txt").write_text("\n".join(keys["test"]) + "\n")
    (root / "category_names_eng.txt").write_text("\n".join(f"cloth{c}" for c in range(14)) + "\n")
    return keys


def write_mini_webvision(root: Path) -> None:
    """Classes 0..49 with three Google images each plus one class-50 image (dropped); one val image per class."""
    train, val = [], []
    for c in range(51):
        for j in range(3 if c < 50 else 1):
            name = f"google/q{c + 1:04d}/{j:08d}.jpg"
            write_image(root / name, c)
            train.append(f"{name} {c}")
        name = f"ILSVRC2012_val_{c + 1:08d}.JPEG"
        write_image(root / "val_images_256" / name, c, size=(8, 8))
        val.append(f"{name} {c}")
    (root / "info").mkdir(parents=True, exist_ok=True)
    (root / "info" / "train_filelist_google.txt").write_text("\n".join(train) + "\n")
    (root / "info" / "val_filelist.txt").write_text("\n".join(val) + "\n")


def write_animal10n(root: Path) -> None:
    """training/ with three images per class, testing/ with one, named <label>_<index>.jpg (64×64 in the release)."""
    for c in range(10):
        for j in range(3):
            write_image(root / "training" / f"{c}_{c * 10 + j}.jpg", c * 20)
        write_image(root / "testing" / f"{c}_{c}.jpg", c * 20)


def write_food101n(root: Path, food: Path) -> None:
    """3 classes: four Food-101N images each (two verified, one in verified_val), Food-101 test images."""
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "classes.txt").write_text("class_name\n" + "\n".join(classes) + "\n")
    images, verified_train, verified_val = [], [], []
    for c, name in enumerate(classes):
        for j in range(4):
            key = f"{name}/{c}{j:031d}.jpg"
            write_image(root / "images" / key, c * 50 + j)
            images.append(key)
        verified_train += [f"{name}/{c}{0:031d}.jpg\t1", f"{name}/{c}{1:031d}.jpg\t0"]
        verified_val.append(f"{name}/{c}{3:031d}.jpg\t{1 if c else 0}")  # class 0's checked image is mislabelled
        write_image(food / "images" / name / f"{100 + c}.jpg", c)
    (root / "meta" / "imagelist.tsv").write_text("class_name/key\n" + "\n".join(images) + "\n")
    header = "class_name/key\tverification_label\n"
    (root / "meta" / "verified_train.tsv").write_text(header + "\n".join(verified_train) + "\n")
    (root / "meta" / "verified_val.tsv").write_text(header + "\n".join(verified_val) + "\n")
    (food / "meta").mkdir(parents=True, exist_ok=True)
    (food / "meta" / "test.txt").write_text("\n".join(f"{name}/{100 + c}" for c, name in enumerate(classes)) + "\n")
