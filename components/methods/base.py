"""The contract every stage-two method fulfils, and what it is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from components.training.augment import Augmenter
from components.training.distributed import Distributed
from components.training.loop import TensorSplits
from components.training.resume import capture_attributes, restore_attributes


@dataclass
class MethodContext:
    """Stage one's outputs and the training setup, handed to a method's constructor."""

    model: torch.nn.Module  # initialised from the base model, on the device
    splits: TensorSplits
    augment: Augmenter
    params: object  # components.config.Params
    wrong_events: np.ndarray  # stage-one wrong-event counts per training sample
    device: torch.device
    optimizer: torch.optim.Optimizer  # the classifier's (meta methods read its current learning rate)
    arch: dict[str, Any] | None = None  # the base model's architecture record (to build peer networks)
    base_state: dict[str, Tensor] | None = None  # stage one's base-model weights
    init: str = "base"  # how `model` was initialised: "base" (stage one's weights) or "scratch"
    warmup_epochs: int = 0  # stage-one epochs behind `base_state` (net 1's warm-up length, for DivideMix's net 2)
    # torchrun: this rank's place; `model` is then the DDP wrapper and `augment` gives views of this rank's shard
    dist: Distributed = field(default_factory=Distributed)


class Stage2Method:
    """Subclasses implement `batch_loss`; the shared loop does the rest (optimiser, schedule, evaluation)."""

    # What a method class declares (components/methods/__init__.py finds methods by them): its stage2.method value,
    # its settings model (params.yaml stage2.<KIND>), and a section several methods read (MetaMethod: stage2.meta).
    KIND: str
    PARAMS: type | None = None
    SHARED_SECTION: str | None = None
    SHARED_PARAMS: type | None = None
    DEFAULT_INIT = "base"  # where training starts unless stage2.init says otherwise (as in the method's paper)
    INITS: tuple[str, ...] = ("base", "scratch")  # the starts the method supports
    # Attributes left out of `state_dict`: the context, and the trained model (the loop checkpoints it).
    STATE_SKIP: tuple[str, ...] = ("ctx", "splits", "model")
    # torchrun/DDP: the method's attributes indexed by training sample (every rank gets the rows the others
    # trained after each epoch) and its per-epoch sums (added over ranks). Whole-batch decisions (small-loss
    # selection, co-divide, meta steps) see the global batch through `ctx.dist`.
    DDP_ROWS: tuple[str, ...] = ()
    DDP_SUMS: tuple[str, ...] = ()

    def share(self, idx: Tensor, dist: Distributed) -> None:
        """Under DDP, after an epoch's batches (`idx`: the samples this rank trained): every rank gets the rows
        the others trained and the summed statistics."""
        if not dist.active:
            return
        for attr in self.DDP_ROWS:
            dist.sync_rows(getattr(self, attr), idx)
        for attr in self.DDP_SUMS:
            value = getattr(self, attr)
            summed = dist.all_sum(torch.as_tensor(value))
            value[:] = summed.numpy() if isinstance(value, np.ndarray) else summed

    @classmethod
    def warmup_end(cls, params) -> str:
        """Which stage-one model a `base` start loads: "base" (the base model) or "last" (its final epoch)."""
        return "base"

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx
        self.model = ctx.model
        self.splits = ctx.splits

    @property
    def eval_model(self) -> torch.nn.Module:
        """The network that is evaluated, selected and saved (an ensemble for two-network methods)."""
        return self.model

    def eval_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        """The architecture record of `eval_model`, given the base model's."""
        return arch

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        """Mean loss of the batch `idx` (indices into the training split) and its train-view logits
        (None when the method has no prediction for exactly these samples; train_acc then comes from
        `on_epoch_end` or is left empty)."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Per-epoch bookkeeping (e.g. refitting a mixture); returns extra columns for the epoch log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything training changes, for resume checkpoints: every attribute's tensors, arrays, generators,
        networks, optimisers, counters and helper objects (components.training.state), except `STATE_SKIP`
        and configuration. Subclasses extend `STATE_SKIP` with attributes rebuilt identically on resume."""
        return capture_attributes(self, skip=self.STATE_SKIP)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` into a method built from the same context (networks and generators in place)."""
        restore_attributes(self, state)

    def noise_scores(self) -> np.ndarray | None:
        """Per training sample, the probability that its given label is wrong — if the method has one."""
        return None
