"""Batched augmentation on the training device: no per-sample Python work in the hot loop.

Images (B, C, H, W): the weak view shifts by up to `crop_padding` pixels (zero-pad + random crop),
optionally flips, and adds a little noise; the strong view adds colour jitter, cutout and stronger noise.
Feature vectors (B, d): additive Gaussian noise (weak), plus 20 % feature dropout (strong).

uint8 images stay uint8 through the geometric steps (shift, flip, cutout); the first photometric step (noise,
jitter) turns them into floats in [0, 1], the scale the models' input layer gives uint8 pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from components.models.classifier import to_unit


class Augmenter:
    """Weak and strong views drawn from one seeded generator."""

    def __init__(self, cfg, *, feature_scale: Tensor | None = None, seed: int = 0, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.scale = feature_scale  # per-feature std for vector data, so noise is relative
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def _rand(self, *shape: int, device: torch.device) -> Tensor:
        return torch.rand(*shape, generator=self.gen, device=device)

    def _noise(self, x: Tensor, std: float) -> Tensor:
        if std == 0:
            return x
        x = to_unit(x)
        noise = torch.randn(x.shape, generator=self.gen, device=x.device) * std
        return x + (noise * self.scale if self.scale is not None and x.ndim == 2 else noise)

    def _shift(self, x: Tensor) -> Tensor:
        pad = self.cfg.crop_padding
        if pad == 0:
            return x
        b, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = (self._rand(b, device=x.device) * (2 * pad + 1)).long()
        dx = (self._rand(b, device=x.device) * (2 * pad + 1)).long()
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)

    def _flip(self, x: Tensor) -> Tensor:
        if not self.cfg.flip:
            return x
        mask = self._rand(x.shape[0], device=x.device) < 0.5
        return torch.where(mask[:, None, None, None], x.flip(3), x)

    def _jitter(self, x: Tensor) -> Tensor:
        """Per-image brightness, contrast and (3 channels) saturation factors drawn from 1 ± color_jitter."""
        strength = self.cfg.color_jitter
        if strength == 0:
            return x
        x = to_unit(x)
        b = x.shape[0]
        factors = 1 + strength * (2 * self._rand(3, b, device=x.device) - 1)
        x = x * factors[0, :, None, None, None]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factors[1, :, None, None, None] + mean
        if x.shape[1] == 3:
            gray = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(1, keepdim=True)
            x = (x - gray) * factors[2, :, None, None, None] + gray
        return x.clamp(0, 1)

    def _cutout(self, x: Tensor) -> Tensor:
        frac = self.cfg.cutout
        if frac == 0:
            return x
        b, _, h, w = x.shape
        side = max(1, round(frac * min(h, w)))
        cy = (self._rand(b, device=x.device) * h).long()
        cx = (self._rand(b, device=x.device) * w).long()
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        top, left = cy[:, None, None] - side // 2, cx[:, None, None] - side // 2
        inside = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)  # side × side (clipped at edges)
        return x.masked_fill(inside[:, None], 0.0)

    def weak(self, x: Tensor) -> Tensor:
        """The training view of stage one and of CE."""
        if x.ndim == 4:
            x = self._flip(self._shift(x))
        return self._noise(x, self.cfg.noise_std)

    def strong(self, x: Tensor) -> Tensor:
        """A harder view for two-view methods (IDO)."""
        if x.ndim == 4:
            return self._noise(self._cutout(self._jitter(self._flip(self._shift(x)))), self.cfg.strong_noise_std)
        keep = (self._rand(*x.shape, device=x.device) >= 0.2).to(x.dtype)
        return self._noise(x * keep, self.cfg.strong_noise_std)
