"""What every classifier shares: an input layer, a body giving the penultimate embedding, and a linear head.

The input layer accepts uint8 pixels (divided by 255 on the device, batch by batch) or floats already in
[0, 1], then optionally normalises each channel; so every caller — training step, evaluation, meta step,
label-free pool — can pass either. Outputs are float32 even under bf16 autocast, so losses stay in fp32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

PIXEL_MAX = 255.0  # uint8 inputs are scaled by this
_HALF = (torch.float16, torch.bfloat16)


def to_unit(x: Tensor) -> Tensor:
    """uint8 pixels → float in [0, 1]; anything else unchanged."""
    return x.to(torch.float32).div(PIXEL_MAX) if x.dtype == torch.uint8 else x


def full_precision(x: Tensor) -> Tensor:
    """float32 for half-precision (autocast) outputs; float32/float64 tensors pass unchanged."""
    return x.float() if x.dtype in _HALF else x


class InputLayer(nn.Module):
    """uint8 → float in [0, 1]; then (x − mean) / std per channel (dim 1) when statistics are given.

    The statistics are non-persistent buffers: they live in the architecture record, not the state_dict.
    """

    def __init__(self, normalize: dict[str, Any] | None = None):
        super().__init__()
        self.normalized = normalize is not None
        if normalize is not None:
            self.register_buffer("mean", torch.tensor(normalize["mean"], dtype=torch.float32), persistent=False)
            self.register_buffer("std", torch.tensor(normalize["std"], dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = to_unit(x)
        if self.normalized:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = (x - self.mean.view(shape)) / self.std.view(shape)
        return x


class Classifier(nn.Module):
    """input → body (embedding) → dropout → head (logits); returns `(logits, embedding)`, never in half precision.

    Meta methods rely on `.body` (an nn.Sequential whose last parameterised child is the last block) and
    `.head` (the final nn.Linear).
    """

    def __init__(self, body: nn.Sequential, head: nn.Linear, *, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        super().__init__()
        self.input = InputLayer(normalize)
        self.body = body
        self.drop = nn.Dropout(dropout)
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.body(self.input(x))
        return full_precision(self.head(self.drop(embedding))), full_precision(embedding)
