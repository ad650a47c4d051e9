"""`gce`: truncated generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018; docs/methods/gce.md)."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.methods.base import MethodContext, Stage2Method
from components.methods.robust_losses import gce_loss, truncated_gce_loss
from components.training.loop import predict_logits


class GceParams(MethodParams):
    """Truncated GCE's settings, params.yaml stage2.gce (Zhang & Sabuncu, NeurIPS 2018, section 3.3): q,
    truncation threshold k, pruning schedule.

    The reference prunes after epoch 40 of 120, then every 10: null keeps those fractions of stage2.epochs
    (a third, then every twelfth); numbers are epochs (40 / 10 = the reference at 120 epochs).
    """

    q: float = Field(0.7, gt=0, le=1)
    k: float = Field(0.5, gt=0, lt=1)
    truncated: bool = True
    prune_start: int | None = Field(None, ge=1, description="first epoch after which weights are recomputed; "
                                    "null = round(epochs / 3)")
    prune_every: int | None = Field(None, ge=1, description="epochs between prunings; null = round(epochs / 12)")

    def schedule(self, epochs: int) -> tuple[int, int]:
        """(prune_start, prune_every) for `epochs` stage-two epochs."""
        start = self.prune_start if self.prune_start is not None else max(1, round(epochs * 40 / 120))
        every = self.prune_every if self.prune_every is not None else max(1, round(epochs * 10 / 120))
        return start, every

    def check(self, stage2: Any) -> None:
        start = self.schedule(stage2.epochs)[0]
        if self.truncated and start >= stage2.epochs:
            raise ValueError(f"gce.prune_start {start} is not below epochs {stage2.epochs}: truncation would never "
                             "happen; lower it, set null (a third of the epochs) or truncated: false")


class GCE(Stage2Method):
    """L_q with q = 0.7; after epoch `prune_start`, then every `prune_every` epochs, samples with p_y ≤ k are pruned
    (defaults: a third of the epochs, then every twelfth, as 40 / 10 of the reference's 120)."""

    KIND = "gce"  # params.yaml stage2.method
    PARAMS = GceParams  # params.yaml stage2.gce

    DEFAULT_INIT = "scratch"  # as in the paper

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        self.cfg = ctx.params.stage2.gce
        self.weights = torch.ones(len(ctx.splits.y_train), device=ctx.device)
        self.prune_start, self.prune_every = self.cfg.schedule(ctx.params.stage2.epochs)

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        logits, _ = self.model(self.ctx.augment.weak(self.splits.x_train[idx]))
        y = self.splits.y_train[idx]
        if self.cfg.truncated:
            loss = truncated_gce_loss(logits, y, self.weights[idx], q=self.cfg.q, k=self.cfg.k)
        else:
            loss = gce_loss(logits, y, q=self.cfg.q)
        return loss.mean(), logits

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        due = epoch >= self.prune_start and (epoch - self.prune_start) % self.prune_every == 0
        if self.cfg.truncated and due:
            probs = torch.softmax(predict_logits(self.model, self.splits.x_train), dim=1)
            p_y = probs.gather(1, self.splits.y_train[:, None]).squeeze(1)
            self.weights = (p_y > self.cfg.k).float()
        return {"kept_fraction": float(self.weights.mean())}
