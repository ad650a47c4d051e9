"""Several trained networks used as one classifier (DivideMix predicts with the sum of its two networks' logits)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """Sum of the members' logits; the embedding is the members' embeddings side by side."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outputs = [member(x) for member in self.members]
        logits = torch.stack([out[0] for out in outputs]).sum(0)
        return logits, torch.cat([out[1] for out in outputs], dim=1)


def ensemble_architecture(member: dict[str, Any], count: int) -> dict[str, Any]:
    """The architecture record of `count` networks of architecture `member` (loads with `build_model`)."""
    return {
        "arch": "ensemble",
        "members": [member] * count,
        "input_shape": member["input_shape"],
        "n_classes": member["n_classes"],
    }
