"""The one training loop both stages use: device-resident tensors, seeded shuffles, per-epoch evaluation."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from components.errors import LnlError
from components.training.distributed import Distributed
from components.training.optim import clip_gradients
from components.training.runtime import Runtime

if TYPE_CHECKING:
    from components.training.resume import ResumeCheckpoint
    from components.training.optim import LrSchedule


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


def predict_logits(model: torch.nn.Module, x: Tensor, *, batch_size: int = 2048) -> Tensor:
    """Eval-mode logits in large batches, without gradient, into one preallocated tensor (collecting the chunks'
    logits instead left small live blocks between the large freed input buffers, and the heap grew with N when
    the inputs stream from disk)."""
    return _predict(model, x, 0, batch_size)


def predict_embeddings(model: torch.nn.Module, x: Tensor, *, batch_size: int = 2048,
                       out_device: torch.device | None = None) -> Tensor:
    """Eval-mode penultimate embeddings (the model's second output), as `predict_logits`; `out_device`: where the
    result is kept (default: the model's device)."""
    return _predict(model, x, 1, batch_size, out_device)


@torch.no_grad()
def _predict(model: torch.nn.Module, x: Tensor, output: int, batch_size: int,
             out_device: torch.device | None = None) -> Tensor:
    was_training = model.training
    model.eval()
    out, start = torch.empty(0), 0
    for chunk in x.split(batch_size):
        part = model(chunk)[output].float()
        if start == 0:
            out = torch.empty((len(x), *part.shape[1:]), dtype=torch.float32, device=out_device or part.device)
        out[start:start + len(part)] = part
        start += len(part)
    model.train(was_training)
    return out


def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((predict_logits(model, x).argmax(1) == y).float().mean()) if len(y) else float("nan")


def batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, ...]:
    """A seeded permutation cut into ceil(n / batch_size) nearly equal batches (never a batch of one)."""
    perm = torch.randperm(n, generator=generator).to(device)
    return torch.tensor_split(perm, n_batches(n, batch_size))


def n_batches(n: int, batch_size: int) -> int:
    """How many batches `batches` cuts n samples into (the smallest holds n // that many)."""
    return max(1, min(math.ceil(n / batch_size), n // 2))


class Progress:
    """One terminal line per epoch at most every `every` seconds (first and last always)."""

    def __init__(self, label: str, epochs: int, every: float = 2.0, first: int = 1):
        self.label, self.epochs, self.every, self.first = label, epochs, every, first
        self.start = self.last = time.perf_counter()

    def update(self, epoch: int, row: dict[str, float]) -> None:
        now = time.perf_counter()
        if epoch not in (self.first, self.epochs) and now - self.last < self.every:
            return
        self.last = now
        left = (now - self.start) / (epoch - self.first + 1) * (self.epochs - epoch)
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
    scheduler: torch.optim.lr_scheduler.LRScheduler | LrSchedule | None,
    batch_loss: Callable[[Tensor], tuple[Tensor, Tensor]],
    after_epoch: Callable[[int, dict[str, float]], dict[str, float] | None] | None = None,
    seed: int,
    label: str,
    runtime: Runtime | None = None,
    checkpointer: ResumeCheckpoint | None = None,
    dist: Distributed | None = None,
    grad_clip: float | None = None,
) -> list[dict[str, float]]:
    """Run `epochs` epochs; `batch_loss(idx)` returns (mean loss, train-view logits) for that batch.

    `runtime` (components.training.runtime) runs each `batch_loss` under its autocast (bf16 on CUDA; nothing on
    the CPU). A non-finite loss is recorded on the device and raised after the epoch's batch loop, naming the
    first such batch, so the loop never waits for the GPU inside an epoch.

    Returns one row per epoch: epoch, loss, train_acc (against the given labels), val_acc, test_acc,
    lr, train_seconds (the batch loop alone, wall time), train_cpu_seconds (the same span in process CPU time, all
    threads: the cost figure that a shared machine's load barely moves), seconds (the whole epoch), plus whatever `after_epoch(epoch, row)` adds (it sees the row's metrics so far). `test_acc` exists only for the oracle curve, which
    evaluation reports separately and never uses for selection.

    `checkpointer` (components.training.resume.ResumeCheckpoint) restores the loop's and the stage's state
    from a matching resume checkpoint before the first epoch (training continues after its epoch, the earlier
    rows included) and saves them after each epoch on its cadence.

    `dist` (components.training.distributed, under torchrun): every rank draws the same global batches and
    `batch_loss` gets this rank's shard of each; `model` is the unwrapped network (evaluated on every rank),
    while `batch_loss` runs the DDP wrapper. The loss is scaled so DDP's gradient average is the global batch's;
    the epoch's loss and accuracy are summed over ranks; only rank 0 prints progress and writes checkpoints.

    `scheduler` steps after every epoch; an `LrSchedule` (components.training.optim) also sets each batch's rate
    during its warm-up, before `batch_loss` (which may read it: the meta methods' virtual step). `grad_clip`
    caps the global gradient norm of the optimiser's parameters before each step (after DDP's all-reduce).
    """
    dist = dist or Distributed()
    n = len(data.y_train)
    if dist.active and n // n_batches(n, batch_size) < 2 * dist.world:
        raise LnlError(f"{label}: batch_size {batch_size} is too small for {dist.world} processes "
                       f"(each needs at least 2 samples of every batch)")
    generator = torch.Generator().manual_seed(seed)
    device = data.x_train.device
    autocast = runtime.autocast if runtime is not None else contextlib.nullcontext
    rows: list[dict[str, float]] = []
    loop_state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "generator": generator, "rows": rows}
    done = checkpointer.resume(loop_state, epochs) if checkpointer is not None else 0
    if dist.active and len(set(dist.gather_rows(torch.tensor([dist.rank]), torch.tensor([done]))[1].tolist())) > 1:
        raise LnlError(f"{label}: the processes found different resume checkpoints (they need one shared "
                       "project folder); delete .lnlflow/checkpoints to start over")
    progress = Progress(label, epochs, first=done + 1) if dist.is_main() else None
    before_batch = getattr(scheduler, "before_batch", None)  # an LrSchedule's per-iteration warm-up
    for epoch in range(done + 1, epochs + 1):
        model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        scored = 0  # samples whose train-view logits the method returned
        first_bad = torch.zeros((), dtype=torch.long, device=device)  # 1-based batch of the first non-finite loss
        bad_loss = torch.zeros((), device=device)
        order = batches(len(data.y_train), batch_size, generator, device)
        if hasattr(data.x_train, "schedule"):  # streamed rows: read this epoch's batches ahead of the steps
            data.x_train.schedule([dist.shard(idx) for idx in order], epoch=epoch)
        for step, idx in enumerate(order):
            if before_batch is not None:
                before_batch(epoch, step, len(order))
            idx = dist.shard(idx)
            with autocast():
                loss, logits = batch_loss(idx)
            value = loss.detach()
            new_bad = (first_bad == 0) & ~torch.isfinite(value)
            first_bad = torch.where(new_bad, step + 1, first_bad)
            bad_loss = torch.where(new_bad, value.float(), bad_loss)
            optimizer.zero_grad(set_to_none=True)
            (loss * dist.loss_scale() if dist.active else loss).backward()
            clip_gradients(optimizer, grad_clip)
            optimizer.step()
            loss_sum += value * len(idx)
            if logits is not None:
                correct += (logits.detach().argmax(1) == data.y_train[idx]).sum()
                scored += len(idx)
        if dist.active:  # global sums, and the earliest bad batch of any rank
            loss_sum, correct, total = dist.all_sum(torch.stack([loss_sum.float(), correct.float(),
                                                                 torch.tensor(float(scored), device=device)]))
            scored = int(total)
            mine = torch.stack([first_bad.float(), bad_loss.float()])[None]
            bad = dist.gather_rows(torch.tensor([dist.rank]), mine)[1]
            bad = bad[bad[:, 0] > 0]
            if len(bad):
                earliest = bad[bad[:, 0].argmin()]
                first_bad, bad_loss = earliest[0].long(), earliest[1]
        if int(first_bad):
            raise LnlError(
                f"{label}: the loss became {float(bad_loss)} at epoch {epoch}, batch {int(first_bad)}; "
                "lower the learning rate or check the input features"
            )
        train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
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
        row["train_cpu_seconds"] = train_cpu_seconds
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if dist.is_main():  # every rank holds the same state; one writes it
            progress.update(epoch, row)
            if checkpointer is not None:
                checkpointer.save(epoch, epochs, loop_state)
    return rows
