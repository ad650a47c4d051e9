"""components.training.loop: the epoch loop, its rows, seeding, non-finite losses and batching."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from components.config import ModelParams
from components.errors import LnlError
from components.models import build_model
from components.models.build import architecture
from components.training.loop import TensorSplits, batches, train_epochs

torch.set_num_threads(1)

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
