"""The per-channel input statistics stored in the architecture record (`model.normalize`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from components.errors import LnlError
from components.models.classifier import PIXEL_MAX


@torch.no_grad()
def channel_stats(x: Tensor, *, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and (population) std per channel (dim 1) in [0, 1] units, in chunks on x's device (uint8 or float)."""
    if len(x) == 0:
        raise LnlError("model.normalize: 'train' needs training samples to compute statistics from")
    dims = [0] + list(range(2, x.ndim))
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for part in x.split(chunk):
        values = part.to(torch.float64)
        if part.dtype == torch.uint8:
            values = values / PIXEL_MAX
        total += values.sum(dims)
        squares += values.square().sum(dims)
    count = x.numel() // x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant channel is only centred
    return mean.tolist(), std.tolist()


def normalization_record(setting: Any, input_shape: tuple[int, ...], x_train: Tensor | None) -> dict[str, list[float]] | None:
    """`model.normalize` resolved to {mean, std} (one value per input channel), or None for 'none'."""
    if setting == "none":
        return None
    if setting == "train":
        if x_train is None:
            raise LnlError("model.normalize: 'train' needs the training split to compute statistics from")
        mean, std = channel_stats(x_train)
    else:
        mean, std = [float(v) for v in setting.mean], [float(v) for v in setting.std]
    channels = int(input_shape[0])
    if len(mean) != channels:
        raise LnlError(f"model.normalize: {len(mean)} mean/std values, but the input has {channels} channel(s)")
    return {"mean": mean, "std": std}
