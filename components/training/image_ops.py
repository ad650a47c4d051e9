"""PIL's 8-bit image operations, batched in torch on the device: uint8 in, uint8 out, bit-exact with Pillow.

Each takes (k, C, H, W) uint8 images and, where it has one, a (k,) parameter per image. They follow PIL's
definitions — ImageEnhance blends (degenerate + f·(image − degenerate), truncated), ITU-R 601 grey in
integers, the 3×3 SMOOTH kernel for sharpness, ImageOps tables for autocontrast/equalize, and AFFINE
transforms with nearest-neighbour sampling at pixel centres and black fill — so the official data loaders'
RandAugment (PIL, one image at a time) and these give the same bytes (tests compare them with Pillow).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _col(t: Tensor) -> Tensor:
    """(k,) → (k, 1, 1, 1) for broadcasting over (k, C, H, W)."""
    return t.view(-1, 1, 1, 1)


def _to_uint8(x: Tensor) -> Tensor:
    """Clamp to [0, 255] and truncate, as PIL's 8-bit blend does."""
    return x.clamp(0, 255).to(torch.uint8)


def grey(x: Tensor) -> Tensor:
    """PIL's RGB → L conversion in integers ((19595 R + 38470 G + 7471 B + 2^15) >> 16); 1 channel: itself."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.to(torch.int32).unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).to(torch.uint8)[:, None]


def blend(x: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance: degenerate + factor·(x − degenerate), per-image factor."""
    d = degenerate.to(torch.float32)
    return _to_uint8(d + _col(factor) * (x.to(torch.float32) - d))


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    return blend(x, torch.zeros_like(x), factor)


def color(x: Tensor, factor: Tensor) -> Tensor:
    return blend(x, grey(x).expand_as(x), factor)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean grey level, rounded (PIL: int(mean + 0.5))."""
    mean = torch.floor(grey(x).to(torch.float32).mean((1, 2, 3)) + 0.5)
    return blend(x, _col(mean).expand_as(x), factor)


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the SMOOTH-filtered image (3×3 ones with centre 5, / 13, rounded); border pixels keep their
    value, as in PIL."""
    h, w = x.shape[2:]
    if h < 3 or w < 3:
        return x
    v = x.to(torch.int32)
    rows = v[:, :, :, :-2] + v[:, :, :, 1:-1] + v[:, :, :, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    total = box + 4 * v[:, :, 1:-1, 1:-1]
    degenerate = v.clone()
    degenerate[:, :, 1:-1, 1:-1] = torch.div(2 * total + 13, 26, rounding_mode="floor")  # ⌊total / 13 + ½⌋
    return blend(x, degenerate, factor)


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the top `bits` bits of every value."""
    shift = _col(8 - bits).to(torch.int32)
    return ((x.to(torch.int32) >> shift) << shift).to(torch.uint8)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Invert every value ≥ threshold."""
    return torch.where(x.to(torch.int16) < _col(threshold).to(torch.int16), x, 255 - x)


def invert(x: Tensor) -> Tensor:
    """PIL ImageOps.invert: 255 − every value."""
    return 255 - x


def solarize_add(x: Tensor, addition: Tensor) -> Tensor:
    """Add a per-image offset, clip to [0, 255], then invert every value ≥ 128 (the RandAugment `SolarizeAdd`:
    numpy addition and clipping, then PIL's solarize at threshold 128)."""
    shifted = (x.to(torch.int16) + _col(addition).to(torch.int16)).clamp(0, 255).to(torch.uint8)
    return solarize(shifted, torch.full_like(addition, 128))


def _lut(x: Tensor, table: Tensor) -> Tensor:
    """Map every value of each (image, channel) through its own 256-entry table (k, C, 256)."""
    k, c, h, w = x.shape
    flat = x.reshape(k * c, h * w).to(torch.int64)
    return table.reshape(k * c, 256).gather(1, flat).view(k, c, h, w)


def autocontrast(x: Tensor) -> Tensor:
    """Per channel, stretch [min, max] to [0, 255] with PIL's table int(i·scale + offset); flat channels unchanged."""
    lo = x.amin((2, 3)).to(torch.float64)[..., None]
    hi = x.amax((2, 3)).to(torch.float64)[..., None]
    flat = hi <= lo
    scale = torch.full_like(hi, 255.0) / torch.where(flat, torch.ones_like(hi), hi - lo)  # (not 255 / t: a reciprocal)
    levels = torch.arange(256, dtype=torch.float64, device=x.device)
    table = torch.trunc(levels * scale + -lo * scale).clamp(0, 255)
    return _lut(x, torch.where(flat, levels, table).to(torch.uint8))


def equalize(x: Tensor) -> Tensor:
    """PIL ImageOps.equalize per channel: step = (pixels − count of the top value) // 255,
    lut[i] = (step // 2 + Σ_{j<i} h[j]) // step (clipped at 255); unchanged where step is 0."""
    k, c, h, w = x.shape
    flat = x.reshape(k * c, h * w).to(torch.int64)
    offsets = 256 * torch.arange(k * c, device=x.device)[:, None]  # one bincount for every (image, channel)
    hist = torch.bincount((flat + offsets).flatten(), minlength=k * c * 256).view(k * c, 256)
    top = flat.amax(1, keepdim=True)
    step = (h * w - hist.gather(1, top)) // 255
    before = hist.cumsum(1) - hist
    table = ((step // 2 + before) // step.clamp_min(1)).clamp(0, 255)
    table = torch.where(step > 0, table, torch.arange(256, device=x.device).expand_as(table))
    return table.gather(1, flat).to(torch.uint8).view(k, c, h, w)


def affine(x: Tensor, matrix: Tensor) -> Tensor:
    """PIL's Image.transform(AFFINE, NEAREST, fill 0): output pixel centre (u, v) reads the input at
    ⌊(a·u + b·v + c, d·u + e·v + f)⌋; `matrix` is (k, 6) = (a, b, c, d, e, f)."""
    k, c, h, w = x.shape
    u = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5)[None, None, :]
    v = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5)[None, :, None]
    a, b, cc, d, e, f = (m.view(k, 1, 1) for m in matrix.to(torch.float32).unbind(1))
    xs = torch.floor(a * u + b * v + cc).to(torch.int64)
    ys = torch.floor(d * u + e * v + f).to(torch.int64)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(k, 1, h * w).expand(k, c, h * w)
    out = x.reshape(k, c, h * w).gather(2, index).view(k, c, h, w)
    return out.masked_fill(~inside[:, None], 0)


def rotation_matrix(degrees: Tensor, h: int, w: int) -> Tensor:
    """PIL Image.rotate(angle)'s matrix: counter-clockwise about the image centre (input = R·(out − c) + c)."""
    theta = -torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(theta), torch.sin(theta)
    cx, cy = w / 2.0, h / 2.0
    matrix = torch.stack([cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy], 1)
    return torch.where(matrix.abs() < 1e-12, torch.zeros_like(matrix), matrix).to(torch.float32)


def _matrix(p: Tensor, slot: int) -> Tensor:
    """The identity (1, 0, 0, 0, 1, 0) per image with entry `slot` set to p."""
    matrix = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], device=p.device).repeat(len(p), 1)
    matrix[:, slot] = p.to(torch.float32)
    return matrix


# op name → (parameter per image, image height, width) → the (k, 6) matrix of PIL's AFFINE transform
MATRICES: dict[str, Callable[[Tensor, int, int], Tensor]] = {
    "rotate": rotation_matrix,
    "shear_x": lambda s, h, w: _matrix(s, 1),  # input x = u + s·v
    "shear_y": lambda s, h, w: _matrix(s, 3),  # input y = s·u + v
    "translate_x": lambda t, h, w: _matrix(t, 2),  # input x = u + t: the content moves left by t
    "translate_y": lambda t, h, w: _matrix(t, 5),
}


def geometric(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The op `name` of MATRICES as a function of (images, per-image parameter)."""
    return lambda x, p: affine(x, MATRICES[name](p, x.shape[2], x.shape[3]))


rotate, shear_x, shear_y, translate_x, translate_y = (geometric(n) for n in MATRICES)
