"""The one training loop both stages use: device-resident tensors, seeded shuffles, per-epoch evaluation."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from components.errors import LnlError
from components.training.runtime import Runtime


@dataclass(frozen=True)
class TensorSplits:
    """Everything training needs, already on the training device. `y_train` holds the noisy labels."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int


def pick_device(runtime) -> torch.device:
    """`cpu`, `cuda`, or `auto` (cuda when available); applies the thread setting."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise LnlError("runtime.device: 'cuda' requested but no CUDA device is available (use 'cpu' or 'auto')")
    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(runtime.device)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: Tensor, *, batch_size: int = 2048) -> Tensor:
    """Eval-mode logits in large batches, without gradient."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(chunk)[0].float() for chunk in x.split(batch_size)]) if len(x) else torch.empty(0)
    model.train(was_training)
    return out


def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((predict_logits(model, x).argmax(1) == y).float().mean()) if len(y) else float("nan")


def batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, ...]:
    """A seeded permutation cut into ceil(n / batch_size) nearly equal batches (never a batch of one)."""
    perm = torch.randperm(n, generator=generator).to(device)
    return torch.tensor_split(perm, max(1, min(math.ceil(n / batch_size), n // 2)))


class Progress:
    """One terminal line per epoch at most every `every` seconds (first and last always)."""

    def __init__(self, label: str, epochs: int, every: float = 2.0):
        self.label, self.epochs, self.every = label, epochs, every
        self.start = self.last = time.perf_counter()

    def update(self, epoch: int, row: dict[str, float]) -> None:
        now = time.perf_counter()
        if epoch not in (1, self.epochs) and now - self.last < self.every:
            return
        self.last = now
        left = (now - self.start) / epoch * (self.epochs - epoch)
        print(
            f"[{self.label}] epoch {epoch}/{self.epochs}  loss {row['loss']:.4f}  train_acc {row['train_acc']:.3f}"
            f"  val_acc {row['val_acc']:.3f}  {now - self.start:.1f}s elapsed, ~{left:.0f}s left",
            flush=True,
            file=sys.stdout,
        )


def train_epochs(
    model: torch.nn.Module,
    data: TensorSplits,
    *,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batch_loss: Callable[[Tensor], tuple[Tensor, Tensor]],
    after_epoch: Callable[[int, dict[str, float]], dict[str, float] | None] | None = None,
    seed: int,
    label: str,
    runtime: Runtime | None = None,
) -> list[dict[str, float]]:
    """Run `epochs` epochs; `batch_loss(idx)` returns (mean loss, train-view logits) for that batch.

    `runtime` (components.training.runtime) runs each `batch_loss` under its autocast (bf16 on CUDA; nothing on
    the CPU). A non-finite loss is recorded on the device and raised after the epoch's batch loop, naming the
    first such batch, so the loop never waits for the GPU inside an epoch.

    Returns one row per epoch: epoch, loss, train_acc (against the given labels), val_acc, test_acc,
    lr, train_seconds (the batch loop alone), seconds (the whole epoch), plus whatever `after_epoch(epoch, row)` adds (it sees the row's metrics so far). `test_acc` exists only for the oracle curve, which
    evaluation reports separately and never uses for selection.
    """
    generator = torch.Generator().manual_seed(seed)
    device = data.x_train.device
    autocast = runtime.autocast if runtime is not None else contextlib.nullcontext
    progress = Progress(label, epochs)
    rows: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        scored = 0  # samples whose train-view logits the method returned
        first_bad = torch.zeros((), dtype=torch.long, device=device)  # 1-based batch of the first non-finite loss
        bad_loss = torch.zeros((), device=device)
        for step, idx in enumerate(batches(len(data.y_train), batch_size, generator, device)):
            with autocast():
                loss, logits = batch_loss(idx)
            value = loss.detach()
            new_bad = (first_bad == 0) & ~torch.isfinite(value)
            first_bad = torch.where(new_bad, step + 1, first_bad)
            bad_loss = torch.where(new_bad, value.float(), bad_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += value * len(idx)
            if logits is not None:
                correct += (logits.detach().argmax(1) == data.y_train[idx]).sum()
                scored += len(idx)
        if int(first_bad):
            raise LnlError(
                f"{label}: the loss became {float(bad_loss)} at epoch {epoch}, batch {int(first_bad)}; "
                "lower the learning rate or check the input features"
            )
        train_seconds = time.perf_counter() - start
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        row = {
            "epoch": epoch,
            "loss": float(loss_sum) / len(data.y_train),
            "train_acc": float(correct) / scored if scored else float("nan"),
            "val_acc": accuracy(model, data.x_val, data.y_val),
            "test_acc": accuracy(model, data.x_test, data.y_test),
            "lr": lr,
        }
        if after_epoch is not None:
            row.update(after_epoch(epoch, row) or {})
        row["train_seconds"] = train_seconds
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        progress.update(epoch, row)
    return rows
