"""Batched augmentation on the training device: no per-sample Python work in the hot loop.

Images (B, C, H, W): the weak view shifts by up to `crop_padding` pixels (reflect- or zero-pad + random crop),
optionally flips, and adds a little noise. The strong view (`augment.strong`) is either `basic` — the weak
geometry plus colour jitter, cutout and stronger noise — or `randaugment` — the weak geometry, then the papers'
RandAugment(n, m) from the FixMatch or the IDO op pool (`augment.randaugment.pool`) and a grey cutout
(components.training.randaugment), uint8 throughout.
Feature vectors (B, d): additive Gaussian noise (weak), plus 20 % feature dropout (strong, either setting).

uint8 images stay uint8 through the geometric steps (shift, flip, cutout) and RandAugment; the first photometric
step of the basic views (noise, jitter) turns them into floats in [0, 1], the scale the models' input layer gives
uint8 pixels. Float images (in [0, 1]) are quantised to 8 bits for RandAugment and returned as floats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from components.errors import LnlError
from components.models.classifier import PIXEL_MAX, to_unit
from components.training.randaugment import cutout_side, randaugment


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
        """Pad by `crop_padding` (reflect: mirror without repeating the edge, as torch/torchvision; zero) and crop
        back at a random offset: one gather, no padded copy."""
        pad = self.cfg.crop_padding
        if pad == 0:
            return x
        b, c, h, w = x.shape
        reflect = self.cfg.pad_mode == "reflect"
        if reflect and pad >= min(h, w):
            raise LnlError(f"augment.crop_padding: {pad} must be smaller than the image side ({min(h, w)} px) "
                           "for pad_mode: reflect (use a smaller padding or pad_mode: zero)")
        dy = (self._rand(b, device=x.device) * (2 * pad + 1)).long() - pad
        dx = (self._rand(b, device=x.device) * (2 * pad + 1)).long() - pad
        rows = dy[:, None] + torch.arange(h, device=x.device)  # source row of each output row, may be outside
        cols = dx[:, None] + torch.arange(w, device=x.device)
        if reflect:
            rows = torch.where(rows < 0, -rows, torch.where(rows >= h, 2 * (h - 1) - rows, rows))
            cols = torch.where(cols < 0, -cols, torch.where(cols >= w, 2 * (w - 1) - cols, cols))
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        source = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (B, H, W) flat indices
        out = x.reshape(b, c, h * w).gather(2, source.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
        return out.masked_fill(~inside[:, None], 0)

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

    def _randaugment(self, x: Tensor) -> Tensor:
        """RandAugment(n, m) from `randaugment.pool` + grey cutout on uint8 pixels; float images in [0, 1] go
        through 8 bits."""
        ra = self.cfg.randaugment
        side = cutout_side(ra.cutout, x.shape[2], x.shape[3], ra.pool)
        if x.dtype == torch.uint8:
            return randaugment(x, ra.n, ra.m, self.gen, cutout_side=side, pool=ra.pool)
        pixels = (x.clamp(0, 1) * PIXEL_MAX).round().to(torch.uint8)
        return randaugment(pixels, ra.n, ra.m, self.gen, cutout_side=side, pool=ra.pool).to(x.dtype) / PIXEL_MAX

    def randaugment(self, x: Tensor) -> Tensor:
        """The papers' strong view (shift, flip, RandAugment of `randaugment.pool`, cutout), whatever `augment.strong`
        says: CLID-MU's `aug: strong_all`. Feature vectors have no such view and get `strong`."""
        if x.ndim == 4:
            return self._randaugment(self._flip(self._shift(x)))
        return self.strong(x)

    def strong(self, x: Tensor) -> Tensor:
        """A harder view for two-view methods (IDO): `augment.strong` = basic or randaugment."""
        if x.ndim == 4:
            if self.cfg.strong == "randaugment":
                return self.randaugment(x)
            return self._noise(self._cutout(self._jitter(self._flip(self._shift(x)))), self.cfg.strong_noise_std)
        keep = (self._rand(*x.shape, device=x.device) >= 0.2).to(x.dtype)
        return self._noise(x * keep, self.cfg.strong_noise_std)
