"""`gce`: truncated generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018; docs/methods/gce.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from components.methods.base import MethodContext, Stage2Method
from components.methods.robust_losses import gce_loss, truncated_gce_loss
from components.training.loop import predict_logits


class GCE(Stage2Method):
    """L_q with q = 0.7; after epoch `prune_start`, then every `prune_every` epochs, samples with p_y ≤ k are pruned
    (defaults: a third of the epochs, then every twelfth, as 40 / 10 of the reference's 120)."""

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
