"""CIFAR (official python format), the safe unpickler, the checked download, and MNIST idx files."""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from components.config import DataParams
from components.data import load_dataset, stratified_split
from components.data.cifar import CIFAR10, find_cifar
from components.data.download import download_and_extract, md5_file, safe_extract, verify_md5
from components.data.idx import parse_idx
from components.data.safe_pickle import load_data_pickle
from components.errors import LnlError
from tests.unit.data.test_datasets_fixtures import write_cifar10, write_cifar100, write_idx


def test_cifar10_official_layout_and_split(tmp_path):
    y_train = write_cifar10(tmp_path)
    data = load_dataset(DataParams(source="cifar10", root=str(tmp_path)))
    assert data.X.dtype == np.uint8 and data.X.shape == (30, 3, 32, 32) and data.pixel_max == 255.0
    assert data.classes[:2] == ("class0", "class1") and data.n_classes == 10
    np.testing.assert_array_equal(data.y[:20], y_train)  # training batches first, in the official order
    assert data.test.sum() == 10 and data.test[20:].all()
    assert [name for name, _ in data.files][:2] == ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/data_batch_2"]
    split = stratified_split(data.y, n_classes=10, val_fraction=0.1, test_fraction=0.2, seed=0, test=data.test)
    np.testing.assert_array_equal(split["test"], np.arange(20, 30))  # the official test set, not a random one
    assert split["val"].size == 10 and split["val"].max() < 20  # carved from training, one per class
    assert np.bincount(data.y[split["val"]], minlength=10).tolist() == [1] * 10


def test_cifar10_pixels_match_the_batch_rows(tmp_path):
    write_cifar10(tmp_path)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    data = load_dataset(DataParams(source="cifar10", root=str(tmp_path / "cifar-10-batches-py")))  # the folder itself
    np.testing.assert_array_equal(data.X[0, 0].ravel(), raw[b"data"][0, :1024])  # red plane first, row-major
    np.testing.assert_array_equal(data.X[0, 2].ravel(), raw[b"data"][0, 2048:])


def test_cifar100_fine_labels(tmp_path):
    y_train = write_cifar100(tmp_path)
    data = load_dataset(DataParams(source="cifar100", root=str(tmp_path)))
    assert data.n_classes == 100 and data.classes[99] == "fine99"
    np.testing.assert_array_equal(data.y[:200], y_train)
    assert data.test.sum() == 100


def test_cifar_missing_files_name_the_expected_layout(tmp_path):
    with pytest.raises(LnlError, match=r"cifar-10-batches-py/ with data_batch_1, .*test_batch, batches.meta.*data.download"):
        load_dataset(DataParams(source="cifar10", root=str(tmp_path)))
    with pytest.raises(LnlError, match="data.root: folder not found"):
        load_dataset(DataParams(source="cifar10", root=str(tmp_path / "nope")))


def test_cifar_wrong_batch_shape(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(pickle.dumps({b"labels": [0, 1], b"data": np.zeros((2, 100), np.uint8)}, protocol=4))
    with pytest.raises(LnlError, match=r"data_batch_3: expected uint8 data \(N, 3072\)"):
        load_dataset(DataParams(source="cifar10", root=str(tmp_path)))


def test_safe_unpickler_refuses_other_globals(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Path("x")}, protocol=4))
    with pytest.raises(LnlError, match="global 'pathlib.PosixPath' is not allowed in a data file"):
        load_data_pickle(path)
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # the classic os.system payload
    with pytest.raises(LnlError, match="global 'os.system' is not allowed"):
        load_data_pickle(path)


def _tar_of(folder: Path, archive: Path) -> str:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return md5_file(archive)


def test_download_verifies_md5_and_extracts(tmp_path):
    write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = _tar_of(tmp_path / "src" / "cifar-10-batches-py", archive)
    layout = dataclasses.replace(CIFAR10, url=archive.as_uri(), md5=md5)
    root = tmp_path / "root"
    folder = find_cifar(layout, root, download=True)
    assert folder == root / "cifar-10-batches-py" and (folder / "test_batch").is_file()
    assert [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]  # no temporary leftovers


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    write_cifar10(tmp_path / "src")
    archive = tmp_path / "a.tar.gz"
    _tar_of(tmp_path / "src" / "cifar-10-batches-py", archive)
    root = tmp_path / "root"
    with pytest.raises(LnlError, match=r"a.tar.gz: checksum mismatch \(md5 [0-9a-f]{32}, expected 0{32}\)"):
        download_and_extract(archive.as_uri(), "0" * 32, root / "new" / "cifar", "cifar-10-batches-py")
    assert not (root / "new").exists()  # the folders this call made are gone
    root.mkdir()
    (root / "mine.txt").write_text("the user's")
    with pytest.raises(LnlError, match="checksum mismatch"):
        download_and_extract(archive.as_uri(), "0" * 32, root, "cifar-10-batches-py")
    assert [p.name for p in root.iterdir()] == ["mine.txt"]  # an existing root keeps exactly what it had
    with pytest.raises(LnlError, match="checksum mismatch"):
        verify_md5(archive, "f" * 32)


def test_download_without_network_is_a_clear_error(tmp_path):
    with pytest.raises(LnlError, match=r"cannot download .*place the extracted files under"):
        download_and_extract((tmp_path / "absent.tar.gz").as_uri(), "0" * 32, tmp_path / "root", "x")
    assert not (tmp_path / "root").exists()


def test_download_never_replaces_an_incomplete_folder(tmp_path):
    write_cifar10(tmp_path / "root")
    (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(LnlError, match=r"cifar-10-batches-py is incomplete \(missing data_batch_3\); add the missing"):
        find_cifar(CIFAR10, tmp_path / "root", download=True)  # before any download
    assert (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_1").is_file()
    with pytest.raises(LnlError, match="already exists; move it away"):
        download_and_extract("file:///absent.tar.gz", "0" * 32, tmp_path / "root", "cifar-10-batches-py")


@pytest.mark.parametrize("member", ["../escape.txt", "/abs.txt", "link"])
def test_extract_rejects_members_escaping_the_root(tmp_path, member):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    target = tmp_path / "out"
    with pytest.raises(LnlError, match="refusing to extract"):
        safe_extract(archive, target)
    assert not target.exists() and not (tmp_path / "escape.txt").exists()


# --- MNIST / Fashion-MNIST idx --------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    x_train, y_train = write_idx(tmp_path, gz=gz)
    data = load_dataset(DataParams(source="mnist", root=str(tmp_path)))
    assert data.X.shape == (30, 1, 28, 28) and data.X.dtype == np.uint8
    np.testing.assert_array_equal(data.X[:20, 0], x_train)
    np.testing.assert_array_equal(data.y[:20], y_train)
    assert data.test[20:].all() and not data.test[:20].any()


def test_fashion_mnist_class_names(tmp_path):
    write_idx(tmp_path / "raw")
    data = load_dataset(DataParams(source="fashion_mnist", root=str(tmp_path)))
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"


def test_idx_header_checks(tmp_path):
    header = np.array([2051, 2, 28, 28], dtype=">i4").tobytes()
    with pytest.raises(LnlError, match=r"header says \(2, 28, 28\) \(1568 bytes\) but 10 bytes follow"):
        parse_idx(header + bytes(10), 2051, "f")
    with pytest.raises(LnlError, match="magic number 2049, expected 2051"):
        parse_idx(np.array([2049, 1, 1, 1], dtype=">i4").tobytes() + b"\x00", 2051, "f")
    write_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(LnlError, match=r"t10k-labels-idx1-ubyte\[.gz\] not found"):
        load_dataset(DataParams(source="mnist", root=str(tmp_path)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(np.array([2049, 3], dtype=">i4").tobytes() + bytes(3)))
    with pytest.raises(LnlError, match="t10k has 10 images but 3 labels"):
        load_dataset(DataParams(source="mnist", root=str(tmp_path)))
