"""Out-of-core and in-memory training give the same run: epoch logs, wrong events, noise scores and weights,
on digits (IDO) and on a small CIFAR-shaped set in the official format (DivideMix, whose per-epoch divisions
predict over the whole training split). The stages run in this process (runtime.data_on_device always vs never)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from components.io import read_tsv
from tests.unit.data.test_datasets_fixtures import write_cifar10
from tests.conftest import ROOT
from tests.e2e.test_resume import untimed

pytestmark = pytest.mark.slow


def stages(names, argv=()):
    import importlib

    for name in names:
        module = importlib.import_module(f"components.stages.{name}")
        module.main(list(argv)) if name in ("stage2", "evaluate") else module.main()


def set_params(path: Path, **sections) -> None:
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_both(ws: Path, monkeypatch) -> dict[str, Path]:
    """Train stage one and two once per path; each run's outputs are copied aside."""
    monkeypatch.chdir(ws)
    stages(["inputs", "data", "noise"])
    runs = {}
    for mode in ("always", "never"):
        set_params(ws / "params.yaml", runtime={"data_on_device": mode, "checkpoint_every": 0})
        stages(["stage1", "stage2", "evaluate"])
        runs[mode] = ws / f"run-{mode}"
        for part in ("outputs", "metrics", "reports"):
            shutil.copytree(ws / part, runs[mode] / part)
    return runs


def assert_same(a: Path, b: Path) -> None:
    for log in ("metrics/stage1_log.tsv", "metrics/stage2_log.tsv"):
        assert untimed(read_tsv(a / log)) == untimed(read_tsv(b / log)), log
    for arrays in ("outputs/stage1/dynamics.npz", "outputs/stage2/scores.npz"):
        if (a / arrays).exists():
            with np.load(a / arrays) as x, np.load(b / arrays) as y:
                assert all(np.array_equal(x[k], y[k], equal_nan=True) for k in x.files), arrays
    for model in ("outputs/stage1/base_model.pt", "outputs/stage2/model_last.pt", "outputs/stage2/model_selected.pt"):
        x, y = (torch.load(p / model, weights_only=True)["state_dict"] for p in (a, b))
        assert all(torch.equal(x[k], y[k]) for k in x), model
    assert (a / "reports/label_issues.csv").read_bytes() == (b / "reports/label_issues.csv").read_bytes()


def test_digits_ido_streams_to_the_same_run(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(ROOT / "params.yaml", ws / "params.yaml")
    set_params(ws / "params.yaml", model={"width": 4}, stage1={"epochs": 3}, stage2={"epochs": 2})
    runs = run_both(ws, monkeypatch)
    assert_same(runs["always"], runs["never"])


def test_cifar_shaped_dividemix_streams_to_the_same_run(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "cifar", per_class_train=16, per_class_test=2)
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(ROOT / "params.yaml", ws / "params.yaml")
    set_params(ws / "params.yaml", data={"source": "cifar10", "root": str(tmp_path / "cifar")},
               model={"width": 4}, augment={"crop_padding": 4, "flip": True},
               stage1={"epochs": 3, "batch_size": 32},
               stage2={"method": "dividemix", "epochs": 2, "batch_size": 32})
    runs = run_both(ws, monkeypatch)
    assert_same(runs["always"], runs["never"])
    with np.load(runs["never"] / "outputs/stage2/scores.npz") as scores:  # the division's per-sample scores
        assert scores["p_label_wrong"].shape == (140,)  # 160 training images less 20 for validation (stratified)


def test_photos_kept_encoded_train_on_seeded_crops_decoded_per_batch(tmp_path, monkeypatch):
    """data.keep_encoded: nothing is decoded into the store; two runs of the same seed train on the same crops."""
    from PIL import Image

    from components.errors import LnlError

    rng = np.random.default_rng(0)
    for c, name in enumerate(["ant", "bee", "cat"]):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for j in range(20):
            w, h = int(rng.integers(24, 64)), int(rng.integers(24, 64))
            pixels = np.clip(rng.normal(80 * c + 40, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{j}.jpg")
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(ROOT / "params.yaml", ws / "params.yaml")
    set_params(ws / "params.yaml", data={"source": "image_folder", "root": str(tmp_path / "photos"), "image_size": 16,
                                         "keep_encoded": True},
               model={"width": 4}, augment={"crop_padding": 0, "flip": True}, stage1={"epochs": 2},
               stage2={"method": "ce", "epochs": 1}, runtime={"checkpoint_every": 0})
    monkeypatch.chdir(ws)
    stages(["inputs", "data", "noise"])
    store = yaml.safe_load((ws / "data/prepared/X/store.json").read_text())
    assert store["kind"] == "encoded" and len(store["files"]) == 60 and not list((ws / "data/prepared/X").glob("*.npy"))
    runs = []
    for attempt in range(2):
        stages(["stage1", "stage2", "evaluate"])
        runs.append(ws / f"run-{attempt}")
        for part in ("outputs", "metrics", "reports"):
            shutil.copytree(ws / part, runs[-1] / part)
    assert_same(runs[0], runs[1])
    set_params(ws / "params.yaml", runtime={"data_on_device": "always"})
    with pytest.raises(LnlError, match="always cannot hold photos kept encoded"):
        stages(["stage1"])


def test_digits_metalabelnet_streams_to_the_same_run(tmp_path, monkeypatch):
    """MetaLabelNet encodes every stored training image once (its frozen encoder's features, kept in host memory
    when the images stream): the streamed run is the in-memory one."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(ROOT / "params.yaml", ws / "params.yaml")
    set_params(ws / "params.yaml", model={"width": 4}, stage1={"epochs": 3},
               stage2={"method": "metalabelnet", "epochs": 2})
    runs = run_both(ws, monkeypatch)
    assert_same(runs["always"], runs["never"])
