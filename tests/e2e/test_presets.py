"""Paper presets (presets/*.yaml, `lnlflow preset`): each applies onto the shipped params.yaml, validates, keeps the
file's comments, and trains through the real stages on a tiny CIFAR-format set."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from components import cli
from components.config import load_params
from components.errors import LnlError
from components.params_file import flatten_params
from components.presets import PRESET_DIR, apply_preset, load_preset, preset_names
from tests.unit.data.test_datasets_fixtures import write_cifar10, write_cifar100
from tests.conftest import copy_shipped_params

ROOT = Path(__file__).resolve().parents[2]
NAMES = preset_names()
INPUTS = {"data.root": "/data/cifar", "noise.label_file": "/data/human.pt", "model.weights": "/data/resnet50.pth"}


def _comments(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


@pytest.fixture()
def params(tmp_path) -> Path:
    return copy_shipped_params(tmp_path)


def test_the_required_settings_are_shipped():
    assert {"ido-cifar100n", "ido-cifar10n-worst", "clidmu-cifar10-sym40", "clidmu-cifar10-inst40",
            "clidmu-cifar10n-worst", "metalabelnet-cifar10-sym40", "dividemix-cifar10-sym50"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_applies_validates_and_keeps_the_comments(params, name):
    original = params.read_text()
    preset, changed = apply_preset(params, name, INPUTS)
    text = params.read_text()
    assert _comments(text) == _comments(original)  # every comment, in order
    assert [l for l in text.splitlines() if l and not l[0].isspace()] == [l for l in original.splitlines() if l and not l[0].isspace()]
    assert stat.S_IMODE(params.stat().st_mode) == 0o640
    flat = flatten_params(load_params(params))
    for key, value in preset.overrides.items():
        assert flat[key] == (list(value) if isinstance(value, tuple) else value), key
    for key in INPUTS:  # the user's inputs: set where the preset needs them, cleared where it does not
        assert flat[key] == (INPUTS[key] if key in preset.inputs else None)
    assert changed and all(old != new for old, new in changed.values())
    assert apply_preset(params, name, INPUTS)[1] == {}  # idempotent: a second run changes nothing
    assert preset.notes and (preset.published is None or preset.tolerance is not None)


def test_a_preset_resets_what_it_does_not_name_and_leaves_the_rest(params):
    from components.params_file import apply_overrides

    apply_preset(params, "ido-cifar100n", INPUTS)
    apply_overrides(params, {"stage2.gce.q": 0.3})  # a section another setting left (the shipped file has none)
    text = params.read_text().replace("  device: cpu ", "  device: auto")
    params.write_text(text)
    _, changed = apply_preset(params, "dividemix-cifar10-sym50", {"data.root": "/elsewhere"})
    after = load_params(params)
    assert changed["stage2.gce.q"] == (0.3, 0.7)  # a leftover of another setting goes back to the default
    assert changed["noise.label_file"] == ("/data/human.pt", None) and changed["model.weights"] == ("/data/resnet50.pth", None)
    assert after.runtime.device == "auto" and after.data.root == "/elsewhere"  # runtime is the user's


def test_cli_lists_applies_and_refuses_with_one_line(params, capsys):
    assert cli.main(["preset"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}\n" in out for name in NAMES) and "published: 73.6 ± 1.0 points" in out
    before = params.read_text()
    assert cli.main(["preset", "nope", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "lnlflow preset: error: unknown preset 'nope'; valid presets: " + ", ".join(NAMES)
    assert cli.main(["preset", "clidmu-cifar10n-worst", "--params", str(params), "--root", "/c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs noise.label_file" in err and "pass --label-file PATH" in err
    assert params.read_text() == before  # nothing written
    assert cli.main(["preset", "clidmu-cifar10-sym40", "--params", str(params), "--root", "/c"]) == 0
    out = capsys.readouterr().out
    assert "  stage2.method: ido → clidmu\n" in out and "  data.root: null → /c\n" in out
    assert "  stage2.schedule.t_max: null → 150\n" in out and "target: — (not known yet — the number has not been taken from the paper" in out


def test_bad_preset_files_name_the_file_and_key(tmp_path):
    good = (PRESET_DIR / "dividemix-cifar10-sym50.yaml").read_text()
    (tmp_path / "a.yaml").write_text(good.replace("stage2.dividemix.alpha:", "stage2.dividemix.alhpa:"))
    with pytest.raises(LnlError, match=r"a.yaml: overrides: unknown parameter 'stage2.dividemix.alhpa'"):
        load_preset("a", tmp_path)
    (tmp_path / "b.yaml").write_text(good.replace("  data.seed: 0", "  data.root: /x"))
    with pytest.raises(LnlError, match=r"b.yaml: overrides: 'data.root' is the user's to set"):
        load_preset("b", tmp_path)
    (tmp_path / "c.yaml").write_text(good.replace("points: 1.0", "points: null"))
    with pytest.raises(LnlError, match=r"c.yaml: preset.tolerance.points: a published number needs a tolerance"):
        load_preset("c", tmp_path)


# --- one short epoch of every preset through the real stages ---------------------------------------------

# Shrinks each preset to seconds on 2 CPU cores while keeping its method, noise kind and data source. The
# networks stay in their family: the ResNets and PreAct-ResNets at width 8; MetaLabelNet's cnn8_mln has fixed
# widths and stays as it is; IDO's timm:resnet50 becomes preact_resnet18 (width 8) because timm is an optional
# extra that is not installed here, and its pretrained weights (model.weights) are dropped with it.
TINY = {
    "stage1.epochs": 2, "stage1.batch_size": 16, "stage2.epochs": 1, "stage2.batch_size": 16,
    "stage2.meta.meta_batch_size": 4, "stage2.clidmu.meta_set_size": 16, "stage2.selection.pool_size": 16,
    "runtime.checkpoint_every": 0, "runtime.threads": 1,
}
SMALL_ARCH = {"timm:resnet50": ("preact_resnet18", 8), "preact_resnet18": ("preact_resnet18", 8), "resnet34": ("resnet34", 8)}
STAGES = ("inputs", "data", "noise", "stage1", "stage2", "evaluate")


def _human_file(path: Path, y_train: np.ndarray, keys: tuple[str, ...], n_classes: int) -> None:
    """A CIFAR-N label file in the official format (torch.save of a dict of int64 arrays, training order)."""
    rng = np.random.default_rng(1)
    content = {"clean_label": y_train.astype(np.int64)}
    for key in keys:
        noisy = y_train.copy()
        flip = rng.random(y_train.size) < 0.4
        noisy[flip] = (noisy[flip] + rng.integers(1, n_classes, flip.sum())) % n_classes
        content[key] = noisy.astype(np.int64)
    torch.save(content, path)


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cifar")
    y10 = write_cifar10(root, per_class_train=5)
    y100 = write_cifar100(root)
    _human_file(root / "CIFAR-10_human.pt", y10, ("aggre_label", "worse_label", "random_label1"), 10)
    _human_file(root / "CIFAR-100_human.pt", y100, ("noisy_label",), 100)
    return {"root": str(root), "cifar10": str(root / "CIFAR-10_human.pt"), "cifar100": str(root / "CIFAR-100_human.pt")}


@pytest.mark.slow
def test_every_preset_trains_one_short_epoch_through_the_stages(tmp_path, monkeypatch, capsys, tiny_cifar):
    from components.params_file import apply_overrides

    for name in NAMES:
        preset = load_preset(name)
        work = tmp_path / name
        work.mkdir()
        shutil.copy(ROOT / "params.yaml", work / "params.yaml")
        monkeypatch.chdir(work)
        label_file = tiny_cifar["cifar100" if preset.overrides["data.source"] == "cifar100" else "cifar10"]
        given = {"data.root": tiny_cifar["root"], "noise.label_file": label_file, "model.weights": "unused.pth"}
        apply_preset(work / "params.yaml", name, given)
        arch, width = SMALL_ARCH.get(preset.overrides["model.arch"], (preset.overrides["model.arch"], None))
        apply_overrides(work / "params.yaml", {**TINY, "model.arch": arch, "model.width": width, "model.weights": None})
        for stage in STAGES:
            assert cli.main([stage]) == 0, f"{name}: lnlflow {stage}: {capsys.readouterr().err}"
        params = load_params("params.yaml")
        assert params.stage2.method == preset.overrides["stage2.method"]
        log = (work / "metrics" / "stage2_log.tsv").read_text().splitlines()
        assert len(log) == 2 and re.search(r"\d", log[1]), f"{name}: one stage-two epoch logged"
        assert (work / "metrics" / "eval.json").is_file()
