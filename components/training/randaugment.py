"""RandAugment as in CLID-MU's and FixMatch's `RandAugmentMC(n, m)`, batched on the device, uint8 in and out.

Each image gets `n` ops drawn with replacement from the 14-op FixMatch pool; each op is applied with probability
0.5 at an integer level v drawn uniformly from [1, m) (`np.random.randint(1, m)` in the official code), mapped
to the op's parameter as the official pool does (level / 10 of the op's range, plus its bias):
brightness/color/contrast/sharpness factor 0.05 + 0.09·v, posterize to 4 + ⌊0.4·v⌋ bits, rotate ±⌊3·v⌋°,
shear ±0.03·v, solarize above 256 − ⌊25.6·v⌋, translate ±⌊0.03·v·side⌋ px (signs drawn per image).
The ops are PIL's (components.training.image_ops). The policy is vectorised over the batch: every random number
is drawn for the whole batch with a fixed shape, so a row's result depends on that row and the generator only;
images are grouped by op (one host sync per round), and the five geometric ops share one affine gather.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from components.training import image_ops as ops

LEVEL_MAX = 10.0  # the official PARAMETER_MAX
GREY = 127  # the official Cutout fill


def _factor(v: Tensor, sign: Tensor, x: Tensor) -> Tensor:
    return v * 0.9 / LEVEL_MAX + 0.05


# The official pool in its order: name → (level v, sign ±1, images) → the op's parameter.
POOL: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "autocontrast": lambda v, s, x: v,
    "brightness": _factor,
    "color": _factor,
    "contrast": _factor,
    "equalize": lambda v, s, x: v,
    "identity": lambda v, s, x: v,
    "posterize": lambda v, s, x: torch.floor(v * 4 / LEVEL_MAX) + 4,
    "rotate": lambda v, s, x: s * torch.floor(v * 30 / LEVEL_MAX),
    "sharpness": _factor,
    "shear_x": lambda v, s, x: s * v * 0.3 / LEVEL_MAX,
    "shear_y": lambda v, s, x: s * v * 0.3 / LEVEL_MAX,
    "solarize": lambda v, s, x: 256 - torch.floor(v * 256 / LEVEL_MAX),
    "translate_x": lambda v, s, x: s * torch.floor(v * 0.3 / LEVEL_MAX * x.shape[3]),
    "translate_y": lambda v, s, x: s * torch.floor(v * 0.3 / LEVEL_MAX * x.shape[2]),
}
OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "autocontrast": lambda x, p: ops.autocontrast(x),
    "brightness": ops.brightness,
    "color": ops.color,
    "contrast": ops.contrast,
    "equalize": lambda x, p: ops.equalize(x),
    "identity": lambda x, p: x,
    "posterize": ops.posterize,
    "rotate": ops.rotate,
    "sharpness": ops.sharpness,
    "shear_x": ops.shear_x,
    "shear_y": ops.shear_y,
    "solarize": ops.solarize,
    "translate_x": ops.translate_x,
    "translate_y": ops.translate_y,
}
assert tuple(POOL) == tuple(OPS)
NAMES = tuple(OPS)
GEOMETRIC = tuple(ops.MATRICES)  # applied together: one gather with a per-image matrix
GROUPS = tuple(n for n in NAMES if n not in GEOMETRIC and n != "identity") + ("geometric",)
_GROUP = torch.tensor([GROUPS.index("geometric") if n in GEOMETRIC else GROUPS.index(n) if n in GROUPS
                       else len(GROUPS) for n in NAMES] + [len(GROUPS)])  # op index (len(NAMES) = none) → group


_SLOT = torch.tensor([GEOMETRIC.index(n) if n in GEOMETRIC else 0 for n in NAMES])  # op index → place in GEOMETRIC


def _geometric(x: Tensor, op: Tensor, v: Tensor, s: Tensor) -> Tensor:
    """Each image's geometric op as one affine gather: the five matrices per image, each image taking its own."""
    h, w = x.shape[2:]
    matrices = torch.stack([ops.MATRICES[n](POOL[n](v, s, x), h, w) for n in GEOMETRIC])  # (5, k, 6)
    return ops.affine(x, matrices[_SLOT.to(x.device)[op], torch.arange(len(x), device=x.device)])


def apply_ops(x: Tensor, op: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    """Apply op `NAMES[op[i]]` at `level[i]`, `sign[i]` to image i (op = len(NAMES): none). One host sync."""
    group = _GROUP.to(x.device)[op]
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group, minlength=len(GROUPS) + 1).tolist()
    out = x.clone()
    start = 0
    for name, count in zip(GROUPS, counts):
        if count:
            rows = order[start:start + count]
            images, v, s = x[rows], level[rows].to(torch.float32), sign[rows].to(torch.float32)
            if name == "geometric":
                out[rows] = _geometric(images, op[rows], v, s)
            else:
                out[rows] = OPS[name](images, POOL[name](v, s, images))
        start += count
    return out


def cutout(x: Tensor, side: int, generator: torch.Generator, *, fill: int = GREY) -> Tensor:
    """The official CutoutAbs: centre uniform in the image, top-left = ⌊max(0, centre − side/2)⌋, clipped at
    the far edges, filled grey. (PIL's rectangle includes its end point, so the official square is side + 1.)"""
    if side <= 0:
        return x
    k, _, h, w = x.shape
    centre = torch.rand(2, k, generator=generator, device=x.device)
    x0 = torch.floor((centre[0] * w - side / 2).clamp_min(0)).long()[:, None, None]
    y0 = torch.floor((centre[1] * h - side / 2).clamp_min(0)).long()[:, None, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    rows = torch.arange(h, device=x.device)[None, :, None]
    inside = (cols >= x0) & (cols < x0 + side) & (rows >= y0) & (rows < y0 + side)
    return x.masked_fill(inside[:, None], fill)


def randaugment(x: Tensor, n: int, m: int, generator: torch.Generator, *, cutout_side: int = 0) -> Tensor:
    """RandAugmentMC(n, m) on a uint8 batch (B, C, H, W), then a grey cutout of `cutout_side` px (0 = none)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"randaugment takes uint8 images, got {x.dtype}")
    b, device = x.shape[0], x.device
    for _ in range(n):
        op = torch.randint(len(NAMES), (b,), generator=generator, device=device)
        applied = torch.rand(b, generator=generator, device=device) < 0.5
        level = torch.randint(1, m, (b,), generator=generator, device=device)
        sign = torch.where(torch.rand(b, generator=generator, device=device) < 0.5, -1, 1)
        x = apply_ops(x, torch.where(applied, op, len(NAMES)), level, sign)
    return cutout(x, cutout_side, generator)


def cutout_side(fraction: float, h: int, w: int) -> int:
    """The cutout side in pixels for a fraction of the shorter image side (0.5 → 16 px at 32)."""
    return int(math.floor(fraction * min(h, w) + 0.5)) if fraction > 0 else 0
