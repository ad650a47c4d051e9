"""Real label noise: the CIFAR-N loader (on the published files when present), and the data → noise stages
end to end on tiny fake CIFAR / image-folder datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from components.config import NoiseParams
from components.data.store import ArrayStore
from components.errors import LnlError
from components.noise.real import cifar_n_labels, load_human_labels
from components.stages import data as data_stage
from components.stages import noise as noise_stage
from components.stages.common import run_stage
from tests.unit.data.test_datasets_fixtures import write_cifar10, write_image

ROOT = Path(__file__).resolve().parents[3]
# the workplace's real CIFAR-N label files: ../shared beside the checkout (tests skip where it is absent)
SHARED = next((p for p in (ROOT.parent / "shared/data/cifar-n", Path("/work/shared/data/cifar-n")) if p.is_dir()),
              ROOT.parent / "shared/data/cifar-n")
PUBLISHED_RATES = [  # CIFAR-N (Wei et al., ICLR 2022): each label set's noise rate, measured against clean_label
    ("CIFAR-10_human.pt", "aggre", 0.0901), ("CIFAR-10_human.pt", "random1", 0.1723),
    ("CIFAR-10_human.pt", "random2", 0.1812), ("CIFAR-10_human.pt", "random3", 0.1764),
    ("CIFAR-10_human.pt", "worst", 0.4021), ("CIFAR-100_human.pt", "noisy", 0.4020),
]


@pytest.mark.parametrize("file,label_set,rate", PUBLISHED_RATES)
def test_published_cifar_n_rates(file, label_set, rate):
    path = SHARED / file
    if not path.is_file():
        pytest.skip(f"{path} not available")
    clean = load_human_labels(path)["clean_label"].astype(np.int64)
    noisy, _ = cifar_n_labels(path, label_set, clean)
    assert noisy.shape == (50000,) and round(float((noisy != clean).mean()), 4) == rate


def _human_file(path: Path, y_train: np.ndarray, flips: int = 4) -> np.ndarray:
    aggre = y_train.copy()
    aggre[:flips] = (aggre[:flips] + 1) % 10
    torch.save({"clean_label": y_train, "aggre_label": aggre, "worse_label": (y_train + 1) % 10}, path)
    return aggre


def test_label_set_not_in_file_lists_valid_names(tmp_path):
    y = np.arange(20) % 10
    _human_file(tmp_path / "h.pt", y)
    with pytest.raises(LnlError, match="'random1' is not in h.pt; valid names: aggre, worst"):
        cifar_n_labels(tmp_path / "h.pt", "random1", y)
    with pytest.raises(LnlError, match="differ from the dataset's training labels at 20 images"):
        cifar_n_labels(tmp_path / "h.pt", "aggre", (y + 3) % 10)
    with pytest.raises(LnlError, match="has 20 labels but the dataset has 5 official training images"):
        cifar_n_labels(tmp_path / "h.pt", "aggre", y[:5])
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(LnlError, match="bad.pt is not a CIFAR-N label file"):
        load_human_labels(tmp_path / "bad.pt")


def test_noise_params_for_real():
    with pytest.raises(ValueError, match="only read by kind 'real'"):
        NoiseParams(label_file="x.pt", label_set="aggre")
    with pytest.raises(ValueError, match="needs noise.label_set"):
        NoiseParams(kind="real", label_file="x.pt")
    assert NoiseParams(kind="real").label_file is None


def _params(workspace: Path, **sections) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        params[name] = {**params[name], **values}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))


def _stages(workspace: Path, monkeypatch) -> tuple[int, int]:
    monkeypatch.chdir(workspace)
    rc = run_stage("data", data_stage.main)
    return rc, (run_stage("noise", noise_stage.main) if rc == 0 else -1)


@pytest.mark.parametrize("val_labels", ["clean", "noisy"])
def test_cifar_n_through_data_and_noise_stages(tmp_path, monkeypatch, val_labels):
    y_train = write_cifar10(tmp_path / "cifar")
    aggre = _human_file(tmp_path / "CIFAR-10_human.pt", y_train)
    _params(tmp_path, data={"source": "cifar10", "root": str(tmp_path / "cifar")},
            noise={"kind": "real", "label_file": str(tmp_path / "CIFAR-10_human.pt"), "label_set": "aggre", "val_labels": val_labels})
    assert _stages(tmp_path, monkeypatch) == (0, 0)
    prepared = np.load("data/prepared/dataset.npz")
    labels = np.load("data/noisy/labels.npz")
    manifest = json.loads(Path("data/noisy/manifest.json").read_text())
    data_info = json.loads(Path("data/prepared/manifest.json").read_text())
    train, val, test = prepared["train_idx"], prepared["val_idx"], prepared["test_idx"]
    assert ArrayStore("data/prepared/X").dtype == np.uint8 and data_info["pixel_max"] == 255.0
    np.testing.assert_array_equal(test, np.arange(20, 30))
    assert data_info["test_split"] == "official test set" and data_info["official_split"] == {"train": 20, "val": None, "test": 10}
    assert len(data_info["source_files"]) == 7 and data_info["arrays_sha256"]["X"]
    y_noisy = labels["y_noisy"]
    np.testing.assert_array_equal(y_noisy[train], aggre[train])
    np.testing.assert_array_equal(y_noisy[val], aggre[val] if val_labels == "noisy" else prepared["y"][val])
    np.testing.assert_array_equal(y_noisy[test], prepared["y"][test])
    assert labels["noisy_mask"][train].sum() == (aggre[train] != y_train[train]).sum()
    assert manifest["kind"] == "real" and manifest["convention"] == "real/aggre" and manifest["ground_truth"] == "full"
    assert manifest["realised_rate"] == pytest.approx(float(np.mean(aggre[train] != y_train[train])))
    assert manifest["requested_rate"] is None and manifest["label_key"] == "aggre_label"


def test_real_noise_with_the_wrong_dataset_writes_nothing(tmp_path, monkeypatch, capsys):
    y_train = write_cifar10(tmp_path / "cifar", seed=1)
    _human_file(tmp_path / "h.pt", (y_train + 1) % 10)
    _params(tmp_path, data={"source": "cifar10", "root": str(tmp_path / "cifar")},
            noise={"kind": "real", "label_file": str(tmp_path / "h.pt"), "label_set": "aggre"})
    assert _stages(tmp_path, monkeypatch) == (0, 2)
    assert "clean labels differ from the dataset's training labels" in capsys.readouterr().err
    assert not (tmp_path / "data" / "noisy").exists()


def test_real_noise_needs_labels(tmp_path, monkeypatch, capsys):
    _params(tmp_path, noise={"kind": "real"})
    assert _stages(tmp_path, monkeypatch) == (0, 2)
    assert "noise.kind 'real' needs noise.label_file (CIFAR-N) or a data source with its own noisy labels" in capsys.readouterr().err


def test_image_folder_clean_column_is_real_noise(tmp_path, monkeypatch):
    rows = ["file,label,clean"]
    for i in range(12):
        write_image(tmp_path / "img" / f"{i}.png", i)
        given = i % 3
        clean = "" if i == 11 else str((given + 1) % 3 if i in (0, 4) else given)
        rows.append(f"{i}.png,{given},{clean}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    _params(tmp_path, data={"source": "image_folder", "root": str(tmp_path / "img"), "labels_csv": str(tmp_path / "labels.csv"),
                            "val_fraction": 0.25, "test_fraction": 0.25},
            noise={"kind": "real"})
    assert _stages(tmp_path, monkeypatch) == (0, 0)
    prepared, labels = np.load("data/prepared/dataset.npz"), np.load("data/noisy/labels.npz")
    manifest = json.loads(Path("data/noisy/manifest.json").read_text())
    train = prepared["train_idx"]
    np.testing.assert_array_equal(labels["y_noisy"][train], prepared["y_given"][train])
    known = labels["noise_known"][train]
    assert manifest["n_ground_truth"] == int(known.sum()) and manifest["ground_truth"] in ("full", "partial")
    flipped = np.isin(train, [0, 4])
    assert manifest["realised_rate"] == pytest.approx(flipped.sum() / known.sum())


def test_instance_noise_on_uint8_pixels_matches_float_pixels():
    rng = np.random.default_rng(0)
    X8 = rng.integers(0, 256, size=(200, 3, 4, 4), dtype=np.uint8)
    y = np.arange(200) % 10
    for scale in ("raw", "unit"):
        cfg = NoiseParams(kind="instance", rate=0.4, idn_pixel_scale=scale)
        from_uint8, _ = noise_stage._noisify(cfg, y, X8, 10, 255.0, 0)
        from_float, _ = noise_stage._noisify(cfg, y, X8.astype(np.float32) / 255.0, 10, 255.0, 0)
        np.testing.assert_array_equal(from_uint8, from_float)
        assert (from_uint8 != y).mean() > 0.2
