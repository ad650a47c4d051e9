"""The contract every stage-two method fulfils, and what it is given."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from components.training.augment import Augmenter
from components.training.loop import TensorSplits


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


class Stage2Method:
    """Subclasses implement `batch_loss`; the shared loop does the rest (optimiser, schedule, evaluation)."""

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx
        self.model = ctx.model
        self.splits = ctx.splits

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Mean loss of the batch `idx` (indices into the training split) and its train-view logits."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Per-epoch bookkeeping (e.g. refitting a mixture); returns extra columns for the epoch log."""
        return {}

    def noise_scores(self) -> np.ndarray | None:
        """Per training sample, the probability that its given label is wrong — if the method has one."""
        return None
