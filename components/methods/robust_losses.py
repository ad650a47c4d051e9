"""Per-sample robust losses (torch in, torch out) of the `gce`, `sce` and `elr` methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gce_loss(logits: Tensor, labels: Tensor, *, q: float) -> Tensor:
    """Generalised cross-entropy per sample: (1 − p_y^q) / q (→ CE as q → 0, MAE-like at q = 1)."""
    p_y = torch.softmax(_at_least_fp32(logits), dim=1).gather(1, labels[:, None]).squeeze(1)
    return (1 - p_y.clamp_min(1e-12) ** q) / q


def truncated_gce_loss(logits: Tensor, labels: Tensor, weights: Tensor, *, q: float, k: float) -> Tensor:
    """Truncated GCE per sample: w_i · (L_q(p_i) − L_q(k)); w_i = 0 prunes a sample to the constant L_q(k)."""
    return weights * (gce_loss(logits, labels, q=q) - (1 - k**q) / q)


def sce_loss(logits: Tensor, labels: Tensor, *, alpha: float, beta: float, log_floor: float = 1e-4) -> Tensor:
    """Symmetric CE per sample: α·CE + β·RCE with RCE = −Σ_c p_c log q_c, the one-hot q clamped at `log_floor`."""
    logits = _at_least_fp32(logits)
    p = torch.softmax(logits, dim=1).clamp(1e-7, 1.0)
    one_hot = F.one_hot(labels, logits.shape[1]).to(p.dtype).clamp(log_floor, 1.0)
    rce = -(p * torch.log(one_hot)).sum(1)
    return alpha * F.cross_entropy(logits, labels, reduction="none") + beta * rce


def elr_penalty(probs: Tensor, targets: Tensor) -> Tensor:
    """ELR's regulariser per sample: log(1 − ⟨p_i, t_i⟩) (p clamped to [1e-4, 1 − 1e-4], t detached)."""
    return torch.log(1 - (probs * targets).sum(1))

