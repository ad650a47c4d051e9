"""`elr`: early-learning regularisation (Liu et al., NeurIPS 2020; docs/methods/elr.md), ELR without the '+'."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.methods.base import MethodContext, Stage2Method
from components.methods.robust_losses import elr_penalty


class ElrParams(MethodParams):
    """ELR's settings, params.yaml stage2.elr (Liu et al., NeurIPS 2020): the paper's CIFAR-10 setting λ = 3,
    β = 0.7."""

    lam: float = Field(3.0, ge=0)
    beta: float = Field(0.7, ge=0, lt=1)


class ELR(Stage2Method):
    """CE + λ·mean log(1 − ⟨p, t⟩); t is a per-sample moving average of the model's own predictions."""

    KIND = "elr"  # params.yaml stage2.method
    PARAMS = ElrParams  # params.yaml stage2.elr

    DDP_ROWS = ("targets",)

    DEFAULT_INIT = "scratch"  # as in the paper

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        self.cfg = ctx.params.stage2.elr
        self.targets = torch.zeros(len(ctx.splits.y_train), ctx.splits.n_classes, device=ctx.device)

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        logits, _ = self.model(self.ctx.augment.weak(self.splits.x_train[idx]))
        probs = torch.softmax(logits.float(), dim=1).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():  # the target moves before the loss, from the detached, renormalised prediction
            current = probs / probs.sum(1, keepdim=True)
            self.targets[idx] = self.cfg.beta * self.targets[idx] + (1 - self.cfg.beta) * current
        penalty = elr_penalty(probs, self.targets[idx]).mean()
        return F.cross_entropy(logits, self.splits.y_train[idx]) + self.cfg.lam * penalty, logits
