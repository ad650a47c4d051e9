"""`sce`: symmetric cross-entropy α·CE + β·RCE (Wang et al., ICCV 2019; docs/methods/sce.md)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.methods.base import Stage2Method
from components.methods.robust_losses import sce_loss


class SceParams(MethodParams):
    """Symmetric CE's settings, params.yaml stage2.sce (Wang et al., ICCV 2019): the paper's CIFAR-10 setting
    α = 0.1, β = 1, one-hot clamped at 1e-4."""

    alpha: float = Field(0.1, ge=0)
    beta: float = Field(1.0, ge=0)
    rce_log_floor: float = Field(1e-4, gt=0, lt=1)


class SCE(Stage2Method):
    """CE plus reverse CE against the one-hot label clamped at `rce_log_floor`."""

    KIND = "sce"  # params.yaml stage2.method
    PARAMS = SceParams  # params.yaml stage2.sce

    DEFAULT_INIT = "scratch"  # as in the paper

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.ctx.params.stage2.sce
        logits, _ = self.model(self.ctx.augment.weak(self.splits.x_train[idx]))
        loss = sce_loss(logits, self.splits.y_train[idx], alpha=cfg.alpha, beta=cfg.beta, log_floor=cfg.rce_log_floor)
        return loss.mean(), logits
