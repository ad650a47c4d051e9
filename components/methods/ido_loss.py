"""IDO's stage-two loss (Zhang et al., NeurIPS 2025): weighted CE + logit consistency + entropy minimisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from components.errors import LnlError

PROB_CLAMP = 1e-4  # each view's softmax is clamped to [PROB_CLAMP, 1 - PROB_CLAMP] before averaging


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 (half/bfloat16 logits are upcast; float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def _check_shapes(logits_weak: Tensor, logits_strong: Tensor, targets: Tensor, weights: tuple[Tensor, ...]) -> None:
    if logits_weak.dim() != 2 or logits_weak.shape != logits_strong.shape:
        raise LnlError(f"ido_loss expects two (B, C) logit tensors of equal shape "
                       f"(got {tuple(logits_weak.shape)} and {tuple(logits_strong.shape)})")
    batch = logits_weak.shape[0]
    for name, t in zip(("targets", "tau1", "eps_w", "tau2"), (targets, *weights)):
        if t.shape != (batch,):
            raise LnlError(f"ido_loss: {name} must have shape ({batch},) (got {tuple(t.shape)})")


def mean_probabilities(logits_weak: Tensor, logits_strong: Tensor) -> Tensor:
    """p̄ = (clamp(softmax z_w) + clamp(softmax z_s)) / 2, clamped to [1e-4, 1 - 1e-4] without renormalising."""
    p_weak = logits_weak.softmax(dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    p_strong = logits_strong.softmax(dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    return (p_weak + p_strong) / 2.0


def ido_loss(logits_weak: Tensor, logits_strong: Tensor, targets: Tensor, tau1: Tensor, eps_w: Tensor, tau2: Tensor,
             *, entropy_confidence_weight: bool = False) -> tuple[Tensor, dict[str, float]]:
    """L = mean(τ1·(CE(z_w, ỹ) + CE(z_s, ỹ))) + mean(ε·(1/C)Σ_c(z_s − z_w)²) + mean(τ2·H(p̄)).

    The weights are detached per-sample numbers (no gradient). With `entropy_confidence_weight` the entropy of
    sample i is also multiplied by its own detached confidence max_c p̄_ic (per sample, not the upstream
    (B, 1) × (B,) broadcast). Returns the loss and the three weighted mean terms as floats
    ("ce", "sim", "ent").
    """
    _check_shapes(logits_weak, logits_strong, targets, (tau1, eps_w, tau2))
    dtype = _compute_dtype(logits_weak.dtype)
    z_w, z_s = logits_weak.to(dtype), logits_strong.to(dtype)
    tau1, eps_w, tau2 = (t.detach().to(device=z_w.device, dtype=dtype) for t in (tau1, eps_w, tau2))
    targets = targets.to(device=z_w.device, dtype=torch.long)

    ce = F.cross_entropy(z_w, targets, reduction="none") + F.cross_entropy(z_s, targets, reduction="none")
    sim = (z_s - z_w).pow(2).mean(dim=1)
    p_bar = mean_probabilities(z_w, z_s)
    ent = -(p_bar * p_bar.log()).sum(dim=1)
    if entropy_confidence_weight:
        ent = ent * p_bar.max(dim=1).values.detach()

    terms = torch.stack([(tau1 * ce).mean(), (eps_w * sim).mean(), (tau2 * ent).mean()])
    ce_term, sim_term, ent_term = terms.detach().tolist()
    return terms.sum(), {"ce": ce_term, "sim": sim_term, "ent": ent_term}
