"""Outputs checked against the sha256 recorded when they were written: cheap for unchanged shards, every write
caught, the damaged DVC cache object removed with the file, the producing stage named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from components.data.store import ArrayStore, write_store
from components.errors import LnlError
from components.integrity import check_model, check_store, locate, remember, repair_damaged
from components.models import build_model, load_model_checkpoint, save_model_checkpoint


@pytest.fixture()
def project(tmp_path, monkeypatch) -> Path:
    """A project folder (cwd) whose data stage wrote a 3-shard store and recorded it as the data stage does."""
    monkeypatch.chdir(tmp_path)
    meta = write_store(Path("data/prepared/X"), np.arange(3000, dtype=np.uint8).reshape(300, 10), shard_bytes=1000)
    remember({Path("data/prepared/X") / s["file"]: s["sha256"] for s in meta["shards"]})
    return tmp_path


SHARD = Path("data/prepared/X/shard-00001.npy")
DAMAGED = (f"{SHARD}: damaged after it was written (its sha256 differs from the one in data/prepared/X/store.json); "
           "repair: dvc repro -f -s data")


def overwrite_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5:] = b"\xff" * 5
    path.chmod(0o644)
    with open(path, "r+b") as handle:  # in place: the same inode and size, as a stray write would leave it
        handle.write(data)


def test_unchanged_shards_cost_a_stat_and_any_write_is_caught(project):
    store = ArrayStore("data/prepared/X")
    assert check_store(store) == 0  # nothing hashed: each shard is as the data stage recorded it
    overwrite_same_size(SHARD)
    with pytest.raises(LnlError) as error:
        check_store(ArrayStore("data/prepared/X"))
    assert str(error.value) == DAMAGED


def test_a_write_that_sets_the_mtime_back_is_caught_by_the_full_check(project):
    before = SHARD.stat()
    overwrite_same_size(SHARD)
    os.utime(SHARD, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert check_store(ArrayStore("data/prepared/X")) == 0  # the cheap check's limit: it trusts the mtime
    with pytest.raises(LnlError) as error:
        check_store(ArrayStore("data/prepared/X"), full=True)  # `lnlflow verify`
    assert str(error.value) == DAMAGED


def test_the_dvc_cache_object_sharing_the_damage_is_removed(project):
    cached = project / ".dvc/cache/files/md5/ab/cdef0123"
    cached.parent.mkdir(parents=True)
    os.link(SHARD, cached)  # DVC's cache.type hardlink: the output and its cache object are one file
    other = project / ".dvc/cache/files/md5/cd/ef"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another object")
    with open(SHARD, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(LnlError) as error:
        check_store(ArrayStore("data/prepared/X"))
    assert str(error.value) == DAMAGED.replace("; repair:", "; removed its copy in the DVC cache (the same file); repair:")
    assert not cached.exists() and other.exists() and SHARD.exists()


def test_the_sweep_before_dvc_repro_deletes_damaged_outputs(project):
    overwrite_same_size(SHARD)
    model = Path("outputs/stage2/model_selected.pt")
    arch = {"arch": "mlp", "input_shape": [4], "n_classes": 3, "hidden": 8, "width": 32, "dropout": 0.0}
    save_model_checkpoint(model, arch, build_model(arch).state_dict())
    assert repair_damaged() == [f"{SHARD}: damaged after it was written (its sha256 differs from the one in "
                                "data/prepared/X/store.json); deleted it, so that this dvc repro runs data again"]
    assert not SHARD.exists() and model.exists()
    assert repair_damaged() == []


def test_a_model_file_is_checked_against_its_sidecar(tmp_path):
    arch = {"arch": "mlp", "input_shape": [4], "n_classes": 3, "hidden": 8, "width": 32, "dropout": 0.0}
    path = tmp_path / "outputs/stage1/base_model.pt"
    save_model_checkpoint(path, arch, build_model(arch).state_dict())
    assert load_model_checkpoint(path, checked=True)[1]["arch"] == arch
    first = next(iter(torch.load(path, weights_only=True)["state_dict"].values())).numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.index(first[:32])  # inside the first tensor's record
    data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
    path.write_bytes(data)
    load_model_checkpoint(path)  # torch itself loads the damaged weights without a word
    with pytest.raises(LnlError) as error:
        load_model_checkpoint(path, checked=True)
    assert str(error.value) == (f"{path}: damaged after it was written (its sha256 differs from the one in "
                                f"{path}.sha256); repair: dvc repro -f -s stage1")
    (tmp_path / "outputs/stage1/base_model.pt.sha256").unlink()
    with pytest.raises(LnlError) as error:
        check_model(path)
    assert str(error.value) == (f"{path}: no recorded sha256 to check it against (base_model.pt.sha256 is missing); "
                                "repair: dvc repro -f -s stage1")


def test_each_output_names_the_stage_that_remakes_it():
    assert locate(Path("/p/data/prepared/X/shard-00000.npy")) == (Path("/p"), "data")
    assert locate(Path("outputs/stage2/model_last.pt")) == (Path(), "stage2")
    assert locate(Path("outputs/compare/gce/seed-1/model_last.pt")) == (Path(), "compare/dvc.yaml:run@gce")
    assert locate(Path("elsewhere/model.pt")) == (None, None)
