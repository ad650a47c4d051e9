"""What the two-network methods (Co-teaching, DivideMix) share: building the peer, small-loss selection."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from components.errors import LnlError
from components.methods.base import MethodContext
from components.models import build_model


def make_peer(ctx: MethodContext) -> nn.Module:
    """A second network of the base model's architecture, trained by the same optimiser.

    It starts like the first (`ctx.init`): from stage one's weights, or from a fresh initialisation drawn
    from the seeded global RNG after the first network's (so the two differ).
    """
    if ctx.arch is None or (ctx.init == "base" and ctx.base_state is None):
        raise LnlError("a two-network method needs the base model's architecture and weights in its context")
    peer = build_model(ctx.arch).to(ctx.device)
    if ctx.init == "base":
        peer.load_state_dict(ctx.base_state)
    peer.train(ctx.model.training)
    ctx.optimizer.add_param_group({"params": list(peer.parameters())})
    return peer


def small_loss_selection(losses: Tensor, keep_fraction: float) -> Tensor:
    """Indices of the int(keep_fraction · n) smallest losses (at least one), smallest first.

    Reads nothing but the losses, so a selection can never depend on clean labels.
    """
    if not 0 < keep_fraction <= 1:
        raise LnlError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    keep = max(1, int(keep_fraction * losses.numel()))
    return torch.argsort(losses.detach(), stable=True)[:keep]
