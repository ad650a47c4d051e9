"""Data-parallel training under `torchrun`: one process per device, each training its shard of every batch.

`setup(device)` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and joins
the process group — NCCL on CUDA (device `cuda:LOCAL_RANK`), gloo on the CPU — with a timeout, so a rank that
dies never leaves the others waiting forever. Without those variables it is a single process and every helper
is a no-op. Batches stay global: every rank draws the same seeded permutation, `shard` keeps a contiguous slice
of each global batch, `loss_scale` makes DistributedDataParallel's gradient average equal the gradient of the
global batch's mean loss, and `gather_rows` / `sync_rows` give every rank the same per-sample statistics.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

from components.errors import LnlError
from components.training.runtime import eager

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_ENV = "LNLFLOW_DIST_TIMEOUT"  # seconds a collective may wait for a missing rank (default 600)
TEARDOWN_GRACE_S = 0.2  # shutdown(): the GIL left free for gloo's worker threads before the group goes


@dataclass
class Distributed:
    """This process's place in the group; `batch` is (global size, start, stop) of the shard being trained."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch: tuple[int, int, int] | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    def is_main(self) -> bool:
        return self.rank == 0

    def _comm(self) -> torch.device:
        """Where collectives run: the GPU for NCCL, the CPU for gloo."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def span(self, n: int) -> tuple[int, int]:
        """This rank's contiguous part [start, stop) of n rows (every rank's part differs by at most one row)."""
        if not self.active:
            return 0, n
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return int(bounds[self.rank]), int(bounds[self.rank + 1])

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch (sizes differ by at most one); remembers where it sits."""
        start, stop = self.span(len(idx))
        self.batch = (len(idx), start, stop)
        return idx if not self.active else idx[start:stop]

    @property
    def offset(self) -> int:
        """Where this rank's shard starts in the global batch (0 in one process)."""
        return self.batch[1] if self.active and self.batch is not None else 0

    def global_batch(self, idx: Tensor) -> Tensor:
        """The whole batch whose shard `idx` is (every rank's shard, in rank order: the single process's batch)."""
        return self.gather_cat(idx)

    def in_shard(self, positions: Tensor) -> Tensor:
        """Of `positions` in the global batch, those inside this rank's shard, as positions within the shard."""
        if not self.active or self.batch is None:
            return positions
        _, start, stop = self.batch
        return positions[(positions >= start) & (positions < stop)] - start

    def batch_share(self, part: Tensor) -> Tensor:
        """This rank's addend `part` of the global batch's loss (the addends over ranks sum to it), in the form
        `train_epochs` expects of `batch_loss`: it multiplies by `loss_scale` and DDP averages over ranks."""
        if not self.active:
            return part
        size, start, stop = self.batch
        return part * (size / (stop - start))

    def split_forward(self, fn, x: Tensor) -> Tensor:
        """`fn(x)` for a row-wise `fn` without gradient, computed data-parallel: each rank applies it to its part of
        `x` and every rank gets all rows (train-mode BatchNorm inside sees all rows through the global statistics)."""
        if not self.active:
            return fn(x)
        start, stop = self.span(len(x))
        return self.gather_cat(fn(x[start:stop]))

    def loss_scale(self) -> float:
        """world · local / global: DDP's mean over ranks of (scale · local mean loss) is the global mean loss."""
        size, start, stop = self.batch or (1, 0, 1)
        return self.world * (stop - start) / size if self.active else 1.0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum over ranks (a new tensor on `tensor`'s device)."""
        if not self.active:
            return tensor
        out = tensor.detach().to(self._comm(), copy=True)
        dist.all_reduce(out)
        return out.to(tensor.device)

    def _all_gather(self, tensor: Tensor) -> list[Tensor]:
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor)
        return parts

    def all_mean(self, tensor: Tensor) -> Tensor:
        """The element-wise mean over ranks (keeps replicated state, e.g. meta-parameters, identical on every rank)."""
        return self.all_sum(tensor) / self.world if self.active else tensor

    def gather_cat(self, values: Tensor) -> Tensor:
        """Every rank's rows of `values` (lengths may differ), concatenated in rank order, on `values`' device.
        Boolean rows travel as bytes (gloo cannot gather bool)."""
        if not self.active:
            return values
        comm = self._comm()
        sizes = [int(n) for n in self._all_gather(torch.tensor([len(values)], device=comm))]
        sent = values.to(comm, torch.uint8 if values.dtype == torch.bool else values.dtype)
        padded = torch.cat([sent, sent.new_zeros((max(sizes) - len(values), *values.shape[1:]))]).contiguous()
        out = torch.cat([part[:n] for part, n in zip(self._all_gather(padded), sizes)])
        return out.to(values.device, values.dtype)

    def gather_rows(self, idx: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Every rank's (sample indices, per-sample rows), concatenated in rank order, on `values`' device."""
        if not self.active:
            return idx, values
        return self.gather_cat(idx.to(values.device, torch.long)), self.gather_cat(values)

    def sync_rows(self, target: Tensor | np.ndarray, idx: Tensor) -> None:
        """In place: `target[i]` on every rank becomes the value held by the rank that trained sample `i`."""
        if not self.active:
            return
        if isinstance(target, np.ndarray):
            rows = idx.cpu().numpy()
            idx_all, val_all = self.gather_rows(idx.cpu(), torch.from_numpy(np.ascontiguousarray(target[rows])))
            target[idx_all.numpy()] = val_all.numpy()
            return
        idx_all, val_all = self.gather_rows(idx.to(target.device), target[idx.to(target.device)])
        target[idx_all] = val_all

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` itself (one process), or a DDP wrapper whose BatchNorm layers use the global batch's statistics."""
        if not self.active:
            return model
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [self.device.index]
        else:
            model = convert_global_batchnorm(model)
            ids = None
        # running statistics are identical on every rank (global batch statistics), so no per-forward broadcast
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


class LocalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Plain BatchNorm for any input rank (what GlobalBatchNorm and SyncBatchNorm layers become in `local_structure`)."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")


class GlobalBatchNorm(LocalBatchNorm):
    """BatchNorm over the global batch with differentiable all-reduces: nn.SyncBatchNorm for gloo on the CPU
    (which SyncBatchNorm rejects). Same parameters and buffers, so checkpoints load into plain BatchNorm."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.track_running_stats) or not dist.is_initialized():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        total = differentiable_all_reduce(torch.cat([x.sum(dims), local]))
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = x - mean.view(shape)
        var = differentiable_all_reduce(centred.pow(2).sum(dims)) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of `module` (in place) as a GlobalBatchNorm sharing its parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module._modules[name] = convert_global_batchnorm(child)
    return module


class ShardedAugmenter:
    """An augmenter whose views of this rank's shard equal a single process's views of those rows: it draws
    for the whole global batch (zeros elsewhere; every op is per row) and keeps this rank's rows. Inputs that are
    not the current shard are augmented as they are."""

    def __init__(self, augmenter, state: Distributed):
        self.augmenter, self.state = augmenter, state

    def __getattr__(self, name: str):
        return getattr(self.augmenter, name)

    def _view(self, fn, x: Tensor) -> Tensor:
        size, start, stop = self.state.batch or (len(x), 0, len(x))
        if len(x) != stop - start or size == len(x):
            return fn(x)
        full = x.new_zeros((size, *x.shape[1:]))
        full[start:stop] = x
        return fn(full)[start:stop]

    def weak(self, x: Tensor) -> Tensor:
        return self._view(self.augmenter.weak, x)

    def strong(self, x: Tensor) -> Tensor:
        return self._view(self.augmenter.strong, x)


def unsharded(augmenter):
    """The augmenter behind a ShardedAugmenter: its views of a whole global batch are the single process's."""
    return augmenter.augmenter if isinstance(augmenter, ShardedAugmenter) else augmenter


def local_structure(model: nn.Module) -> nn.Module:
    """A copy of `model` whose BatchNorm layers never synchronise (plain per-process batch statistics): the module
    that functional calls run through when one rank computes a replicated step over a whole global batch."""
    model = unwrap(model)
    with eager(model):  # a compiled forward is not copied
        twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if name and isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
            local = LocalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
            local.load_state_dict(module.state_dict())
            local.train(module.training)
            parent, _, child = name.rpartition(".")
            twin.get_submodule(parent)._modules[child] = local
    return twin


def unwrap(model: nn.Module) -> nn.Module:
    """The trained network inside a DDP wrapper (state_dict keys without `module.`)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


_STATE = Distributed()


def requested_world() -> int:
    """The number of processes torchrun started (1 outside torchrun); readable before `setup`."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise LnlError(f"distributed run: WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def setup(device: torch.device) -> Distributed:
    """Join torchrun's process group (or stay a single process); returns this rank's state and device."""
    global _STATE
    if requested_world() == 1:
        _STATE = Distributed(device=device)
        return _STATE
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing:
        raise LnlError(f"distributed run: environment variables {', '.join(missing)} are not set "
                       "(launch with torchrun)")
    try:
        rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
    except ValueError as error:
        raise LnlError(f"distributed run: bad torchrun environment ({error})") from None
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise LnlError(f"distributed run: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    # DDP's rank-local-buffer option and the differentiable all-reduce are deprecated without a replacement yet
    warnings.filterwarnings("ignore", r".*(broadcast_buffers|torch\.distributed\.nn\.functional\.all_reduce)"
                            r".* is deprecated", FutureWarning)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout,
                                **({"device_id": device} if device.type == "cuda" else {}))
    _STATE = Distributed(rank, world, local, device)
    return _STATE


def shutdown(*, clean: bool = True) -> None:
    """Leave the process group (at the end of a stage, also after an error: `clean=False`).

    After a clean run a barrier comes first, then a short sleep: both wait without holding the GIL, so gloo's
    worker threads can finish releasing every earlier collective's tensors. A worker still waiting for the GIL
    (to free a gathered tensor whose Python object it owns) when the group is torn down deadlocks the rank at exit:
    the group's destructor joins that worker while holding the GIL (seen with torch 2.13 on the CPU, rarely: the
    barrier alone left it possible when the worker thread was descheduled past the barrier's return).
    """
    global _STATE
    if dist.is_initialized():
        if clean:
            dist.barrier()
            time.sleep(TEARDOWN_GRACE_S)
        dist.destroy_process_group()
    _STATE = Distributed()


def current() -> Distributed:
    """The state `setup` made (a single process before it runs)."""
    return _STATE


def is_peer_failure(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another rank died or never answered."""
    return _STATE.active and isinstance(error, dist.DistError)
