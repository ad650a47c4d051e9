"""Tests for components.training (label wave, augmentation, loop), the stage-one recorder, and the models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.config import AugmentParams, ModelParams
from components.errors import LnlError
from components.models import build_model, load_model_checkpoint, save_model_checkpoint
from components.models.build import architecture
from components.stages.stage1 import WrongEventRecorder
from components.training.augment import Augmenter
from components.training.label_wave import LabelWaveSelector, snapshot
from components.training.loop import TensorSplits, batches, train_epochs

torch.set_num_threads(1)

# --- LabelWaveSelector ------------------------------------------------------------------------------------


def _fill(model: nn.Module, value: float) -> None:
    """Overwrite every parameter in place (so a stored view of the live tensors would change too)."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def _run_selector(rule: str, changes: list[int | None], n_samples: int = 1000) -> tuple[LabelWaveSelector, nn.Module]:
    """Epoch e sets every weight to float(e), then reports changes[e-1]; training goes on to the end."""
    model = nn.Linear(3, 2)
    selector = LabelWaveSelector(rule, len(changes), n_samples)
    for epoch, change in enumerate(changes, start=1):
        _fill(model, float(epoch))
        selector.update(epoch, change, model)
    _fill(model, -1.0)  # keep mutating after the end, like stage one reloading weights
    return selector, model


def _weights_epoch(state: dict[str, torch.Tensor]) -> float:
    values = torch.cat([v.flatten() for v in state.values()]).unique()
    assert values.numel() == 1, f"state mixes epochs: {values}"
    return float(values)


WAVE = [None, 100, 80, 90, 70, 60]  # first non-decrease at epoch 4 -> label wave picks epoch 3


def test_label_wave_returns_previous_epoch_weights():
    selector, model = _run_selector("label_wave", WAVE)
    assert selector.selected_epoch == 3
    assert _weights_epoch(selector.state) == 3.0  # not 4 (aliasing), not 6 (later epochs), not -1 (live view)
    for value in selector.state.values():
        assert value.device.type == "cpu"
    # the chosen state loads back into a model
    model.load_state_dict(selector.state)
    assert float(model.weight.detach()[0, 0]) == 3.0


def test_label_wave_aliased_returns_current_epoch():
    selector, _ = _run_selector("label_wave_aliased", WAVE)
    assert selector.selected_epoch == 4
    assert _weights_epoch(selector.state) == 4.0


def test_last_rule_returns_final_epoch():
    selector, _ = _run_selector("last", WAVE)
    assert selector.selected_epoch == len(WAVE)
    assert _weights_epoch(selector.state) == float(len(WAVE))


@pytest.mark.parametrize("rule", ["label_wave", "label_wave_aliased"])
def test_monotone_decreasing_curve_selects_final_epoch(rule):
    selector, _ = _run_selector(rule, [None, 100, 80, 60, 40, 20])
    assert selector.selected_epoch == 6
    assert _weights_epoch(selector.state) == 6.0


def test_plateau_counts_as_not_decreasing():
    selector, _ = _run_selector("label_wave", [None, 100, 80, 80, 10])
    assert selector.selected_epoch == 3  # epoch 3 has 80 < 100; epoch 4 ties with 80 -> epoch 3
    assert _weights_epoch(selector.state) == 3.0


def test_no_decrease_at_epoch_two_selects_epoch_two():
    selector, _ = _run_selector("label_wave", [None, 50, 40], n_samples=50)
    assert selector.selected_epoch == 2
    assert _weights_epoch(selector.state) == 2.0


def test_snapshot_is_a_copy():
    model = nn.Linear(2, 2)
    _fill(model, 1.0)
    state = snapshot(model)
    _fill(model, 2.0)
    assert _weights_epoch(state) == 1.0


# --- WrongEventRecorder ------------------------------------------------------------------------------------------


def _logits(preds: list[int], n_classes: int = 3) -> torch.Tensor:
    return F.one_hot(torch.tensor(preds), n_classes).float() * 5.0


def test_wrong_events_count_only_mismatches():
    labels = torch.tensor([0, 1, 2, 1])
    rec = WrongEventRecorder(4, epochs=3, device=torch.device("cpu"))
    losses = torch.arange(4, dtype=torch.float32)
    # epoch 1, two batches: predictions [0, 2 | 2, 0] -> samples 1 and 3 wrong
    rec.record(1, torch.tensor([0, 1]), _logits([0, 2]), labels[[0, 1]], losses[:2])
    rec.record(1, torch.tensor([2, 3]), _logits([2, 0]), labels[[2, 3]], losses[2:])
    assert rec.wrong.tolist() == [0, 1, 0, 1]
    # epoch 2, shuffled order: predictions for samples [3, 0, 2, 1] = [0, 1, 2, 1] -> samples 3 and 0 wrong
    idx = torch.tensor([3, 0, 2, 1])
    rec.record(2, idx, _logits([0, 1, 2, 1]), labels[idx], losses[idx] + 10)
    assert rec.wrong.tolist() == [1, 1, 0, 2]
    assert rec.preds[0].tolist() == [0, 2, 2, 0]
    assert rec.preds[1].tolist() == [1, 1, 2, 0]
    assert rec.losses[1].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert rec.prediction_change(1) is None
    assert rec.prediction_change(2) == 2  # samples 0 (0 -> 1) and 1 (2 -> 1)


def test_wrong_events_at_most_once_per_epoch():
    labels = torch.zeros(5, dtype=torch.long)
    rec = WrongEventRecorder(5, epochs=4, device=torch.device("cpu"))
    for epoch in range(1, 5):
        rec.record(epoch, torch.arange(5), _logits([1] * 5), labels, torch.zeros(5))
        assert rec.wrong.tolist() == [epoch] * 5
        if epoch > 1:
            assert rec.prediction_change(epoch) == 0


# --- Augmenter -------------------------------------------------------------------------------------------------


def _images(b: int = 6, c: int = 1, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5  # no zeros


def test_augment_shapes_preserved():
    aug = Augmenter(AugmentParams(crop_padding=2, flip=True, cutout=0.25), seed=0)
    for x in (_images(), _images(c=3, h=10, w=7), torch.randn(9, 5)):
        assert aug.weak(x).shape == x.shape
        assert aug.strong(x).shape == x.shape
        assert aug.weak(x).dtype == x.dtype


def test_augment_deterministic_by_seed():
    cfg = AugmentParams(crop_padding=2, flip=True, cutout=0.3)
    x = _images()
    a, b, c = Augmenter(cfg, seed=7), Augmenter(cfg, seed=7), Augmenter(cfg, seed=8)
    wa, sa = a.weak(x), a.strong(x)
    wb, sb = b.weak(x), b.strong(x)
    assert torch.equal(wa, wb) and torch.equal(sa, sb)
    assert not torch.equal(wa, c.weak(x))
    # the generator advances: a second call differs from the first
    assert not torch.equal(wa, a.weak(x))


def test_weak_view_is_identity_without_shift_flip_noise():
    aug = Augmenter(AugmentParams(crop_padding=0, flip=False, noise_std=0.0), seed=0)
    x = _images()
    assert torch.equal(aug.weak(x), x)
    v = torch.randn(4, 3)
    assert torch.equal(aug.weak(v), v)


def test_shift_moves_content_by_at_most_padding():
    aug = Augmenter(AugmentParams(crop_padding=1, flip=False, noise_std=0.0), seed=3)
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    out = aug.weak(x)
    assert torch.equal(out.sum((1, 2, 3)), torch.ones(64))  # the single pixel stays inside the image
    positions = {tuple(map(int, torch.nonzero(o[0])[0])) for o in out}
    assert positions <= {(r, c) for r in (3, 4, 5) for c in (3, 4, 5)}
    assert len(positions) > 1


def test_flip_mirrors_horizontally():
    aug = Augmenter(AugmentParams(crop_padding=0, flip=True, noise_std=0.0), seed=0)
    x = _images(b=32)
    out = aug.weak(x)
    for o, xi in zip(out, x):
        assert torch.equal(o, xi) or torch.equal(o, xi.flip(2))
    flipped = sum(not torch.equal(o, xi) for o, xi in zip(out, x))
    assert 0 < flipped < 32


@pytest.mark.parametrize("frac, side", [(0.25, 2), (0.375, 3), (0.5, 4)])
def test_cutout_zeroes_a_square(frac, side):
    cfg = AugmentParams(crop_padding=0, flip=False, cutout=frac, strong_noise_std=0.0)
    aug = Augmenter(cfg, seed=1)
    x = _images(b=200)
    out = aug.strong(x)
    full = 0
    for o, xi in zip(out, x):
        zero = o[0] == 0
        rows, cols = torch.nonzero(zero, as_tuple=True)
        assert rows.numel() > 0, "every image gets a cutout"
        # the zeroed pixels form one axis-aligned rectangle of at most side x side
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        assert r1 - r0 + 1 <= side and c1 - c0 + 1 <= side
        assert bool(zero[r0 : r1 + 1, c0 : c1 + 1].all())
        assert torch.equal(o[0][~zero], xi[0][~zero])  # everything else untouched
        full += rows.numel() == side * side
    assert full > 0  # away from the borders the square is exactly side x side


def test_vector_data_noise_and_dropout():
    scale = torch.tensor([1.0, 100.0])
    aug = Augmenter(AugmentParams(noise_std=1.0, strong_noise_std=0.0), feature_scale=scale, seed=0)
    x = torch.zeros(4000, 2)
    noise = aug.weak(x)
    std = noise.std(0)
    assert 0.9 < float(std[0]) < 1.1 and 90 < float(std[1]) < 110  # noise relative to each feature's spread
    ones = torch.ones(4000, 2)
    strong = aug.strong(ones)
    assert set(strong.unique().tolist()) <= {0.0, 1.0}
    assert 0.17 < float((strong == 0).float().mean()) < 0.23  # 20 % feature dropout


# --- the training loop ----------------------------------------------------------------------------------------


def _splits(n_train: int = 65, d: int = 4, n_classes: int = 3) -> TensorSplits:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 40, d, generator=gen)
    y = torch.randint(0, n_classes, (n_train + 40,), generator=gen)
    return TensorSplits(x[:n_train], y[:n_train], x[n_train:n_train + 20], y[n_train:n_train + 20],
                        x[n_train + 20:], y[n_train + 20:], n_classes)


def _setup(splits: TensorSplits):
    torch.manual_seed(0)
    arch = architecture(ModelParams(arch="mlp", hidden=8), tuple(splits.x_train.shape[1:]), splits.n_classes)
    model = build_model(arch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def batch_loss(idx):
        logits, _ = model(splits.x_train[idx])
        return F.cross_entropy(logits, splits.y_train[idx]), logits

    return model, optimizer, batch_loss


def test_train_epochs_rows(capsys):
    splits = _splits()
    model, optimizer, batch_loss = _setup(splits)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    seen = []

    def after_epoch(epoch, row):
        seen.append((epoch, set(row)))
        return {"extra": epoch * 10}

    rows = train_epochs(model, splits, epochs=3, batch_size=64, optimizer=optimizer, scheduler=scheduler,
                        batch_loss=batch_loss, after_epoch=after_epoch, seed=0, label="unit")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    keys = {"epoch", "loss", "train_acc", "val_acc", "test_acc", "lr", "train_seconds", "train_cpu_seconds", "seconds", "extra"}
    for r in rows:
        assert set(r) == keys
        assert math.isfinite(r["loss"]) and r["loss"] > 0
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["val_acc"] <= 1 and 0 <= r["test_acc"] <= 1
        assert r["seconds"] >= r["train_seconds"] >= 0
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.05, 0.025])  # the lr used during each epoch
    assert [r["extra"] for r in rows] == [10, 20, 30]
    assert seen[0] == (1, {"epoch", "loss", "train_acc", "val_acc", "test_acc", "lr"})
    assert "[unit] epoch 1/3" in capsys.readouterr().out


def test_train_epochs_is_seeded():
    runs = []
    for _ in range(2):
        splits = _splits()
        model, optimizer, batch_loss = _setup(splits)
        rows = train_epochs(model, splits, epochs=2, batch_size=16, optimizer=optimizer, scheduler=None,
                            batch_loss=batch_loss, seed=3, label="unit")
        runs.append([r["loss"] for r in rows])
    assert runs[0] == runs[1]


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_nan_loss_names_the_epoch():
    splits = _splits()
    model, optimizer, real_loss = _setup(splits)
    state = {"epoch": 1}

    def batch_loss(idx):
        loss, logits = real_loss(idx)
        if state["epoch"] == 2:
            return torch.tensor(float("nan"), requires_grad=True), logits
        return loss, logits

    def after_epoch(epoch, row):
        state["epoch"] = epoch + 1

    with pytest.raises(LnlError, match=r"epoch 2, batch 1") as info:
        train_epochs(model, splits, epochs=3, batch_size=64, optimizer=optimizer, scheduler=None,
                     batch_loss=batch_loss, after_epoch=after_epoch, seed=0, label="stage1")
    assert "nan" in str(info.value) and str(info.value).startswith("stage1:")


def test_infinite_loss_raises():
    splits = _splits()
    model, optimizer, real_loss = _setup(splits)

    def batch_loss(idx):
        _, logits = real_loss(idx)
        return logits.sum() * float("inf"), logits

    with pytest.raises(LnlError, match="epoch 1"):
        train_epochs(model, splits, epochs=1, batch_size=64, optimizer=optimizer, scheduler=None,
                     batch_loss=batch_loss, seed=0, label="unit")


def test_batches_65_by_64():
    parts = batches(65, 64, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert sorted(len(p) for p in parts) == [32, 33]
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.arange(65))


def test_batches_never_of_size_one():
    gen = torch.Generator().manual_seed(0)
    for batch_size in (2, 3, 4, 7, 64):
        for n in range(2, 150):
            parts = batches(n, batch_size, gen, torch.device("cpu"))
            sizes = [len(p) for p in parts]
            assert min(sizes) >= 2, (n, batch_size, sizes)
            assert sum(sizes) == n
            assert max(sizes) <= max(batch_size, 3)  # never much larger than asked


def test_batches_seeded():
    a = batches(100, 30, torch.Generator().manual_seed(5), torch.device("cpu"))
    b = batches(100, 30, torch.Generator().manual_seed(5), torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# --- models and checkpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, shape, emb",
    [
        (ModelParams(arch="mlp", hidden=16), (1, 8, 8), 16),
        (ModelParams(arch="mlp", hidden=16), (5,), 16),
        (ModelParams(arch="cnn", width=4), (1, 8, 8), 16),
        (ModelParams(arch="cnn", width=4), (3, 16, 16), 16),
    ],
)
def test_models_return_logits_and_embedding(cfg, shape, emb):
    model = build_model(architecture(cfg, shape, 7))
    logits, embedding = model(torch.rand(3, *shape))
    assert logits.shape == (3, 7)
    assert embedding.shape == (3, emb)


def test_cnn_on_feature_data_raises():
    with pytest.raises(LnlError, match="model.arch.*'cnn' needs image data.*mlp"):
        architecture(ModelParams(arch="cnn"), (64,), 10)


def test_checkpoint_round_trip(tmp_path):
    arch = architecture(ModelParams(arch="cnn", width=4), (1, 8, 8), 10)
    torch.manual_seed(0)
    model = build_model(arch)
    model(torch.rand(8, 1, 8, 8))  # update BatchNorm running stats so buffers are non-trivial
    model.eval()
    path = tmp_path / "sub" / "model.pt"
    save_model_checkpoint(path, arch, model.state_dict(), epoch=4, rule="label_wave")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.sha256"]  # no temp file left
    torch.load(path, weights_only=True)  # loads without unpickling arbitrary objects
    loaded, payload = load_model_checkpoint(path, checked=True)  # its bytes match the sidecar's sha256
    assert payload["arch"] == arch
    assert payload["meta"] == {"epoch": 4, "rule": "label_wave"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    loaded.eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x)[0], model(x)[0])


def test_the_same_model_saved_twice_is_the_same_bytes(tmp_path):
    """DVC hashes and the registry's de-duplication need identical weights to give an identical file."""
    arch = architecture(ModelParams(arch="cnn", width=4), (1, 8, 8), 10)
    state = build_model(arch).state_dict()
    for name in ("a.pt", "b.pt"):
        save_model_checkpoint(tmp_path / name, arch, state, epoch=1)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_load_missing_checkpoint(tmp_path):
    with pytest.raises(LnlError, match="not found"):
        load_model_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", np.random.default_rng(0).bytes(256)])
def test_corrupt_checkpoint_raises(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(LnlError, match="model.pt: not a valid lnlflow model file"):
        load_model_checkpoint(path)


def test_truncated_checkpoint_raises(tmp_path):
    arch = architecture(ModelParams(arch="mlp", hidden=8), (4,), 3)
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, arch, build_model(arch).state_dict())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(LnlError, match="model.pt: not a valid lnlflow model file"):
        load_model_checkpoint(path)


def test_incompatible_checkpoint_raises(tmp_path):
    arch = architecture(ModelParams(arch="mlp", hidden=8), (4,), 3)
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, dict(arch, n_classes=5), build_model(arch).state_dict())
    with pytest.raises(LnlError, match="model.pt: not a valid lnlflow model file"):
        load_model_checkpoint(path)
