"""`sce`: symmetric cross-entropy α·CE + β·RCE (Wang et al., ICCV 2019; docs/methods/sce.md)."""

from __future__ import annotations

from torch import Tensor

from components.methods.base import Stage2Method
from components.methods.robust_losses import sce_loss


class SCE(Stage2Method):
    """CE plus reverse CE against the one-hot label clamped at `rce_log_floor`."""

    DEFAULT_INIT = "scratch"  # as in the paper

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.ctx.params.stage2.sce
        logits, _ = self.model(self.ctx.augment.weak(self.splits.x_train[idx]))
        loss = sce_loss(logits, self.splits.y_train[idx], alpha=cfg.alpha, beta=cfg.beta, log_floor=cfg.rce_log_floor)
        return loss.mean(), logits
