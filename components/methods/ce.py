"""`ce`: continue training the base model with plain cross-entropy on the noisy labels (the baseline)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from components.methods.base import Stage2Method


class CrossEntropy(Stage2Method):
    """Cross-entropy on the weak view."""

    KIND = "ce"  # params.yaml stage2.method

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        logits, _ = self.model(self.ctx.augment.weak(self.splits.x_train[idx]))
        return F.cross_entropy(logits, self.splits.y_train[idx]), logits
