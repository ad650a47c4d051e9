"""RandAugment as the papers' data loaders run it, batched on the device, uint8 in and out: FixMatch's
`RandAugmentMC(n, m)` (CLID-MU's strong view) and IDO's `RandAugmentwogeo(n, m)` (`augment.randaugment.pool`).

Both policies give each image `n` ops drawn with replacement from their pool; each op is applied with probability
0.5 at an integer level v drawn uniformly from [1, m) (`np.random.randint(1, m)` in the official code), mapped to
the op's parameter as v / 10 of the op's range plus its bias; the signed ops (rotate, shear, translate,
solarize_add) take either sign with probability 0.5. A grey cutout follows. The pools, in their official order:

- `fixmatch` (14 ops, FixMatch's `fixmatch_augment_pool`): autocontrast, brightness, color, contrast, equalize,
  identity, posterize, rotate, sharpness, shear_x, shear_y, solarize, translate_x, translate_y. Brightness-type
  factors 0.05 + 0.09·v (0.05–0.95 over the full range: they only darken / flatten), posterize to 4 + ⌊0.4·v⌋
  bits, rotate ±⌊3·v⌋°, shear ±0.03·v, solarize above 256 − ⌊25.6·v⌋, translate ±⌊0.03·v·side⌋ px.
- `ido` (16 ops, the `new_augment_pool` behind `RandAugmentwogeo` in `dataloader/randaugment.py` of the official
  IDO repository, iTheresaApocalypse/IDO): autocontrast, brightness, color, contrast, cutout, equalize, invert,
  posterize, rotate, sharpness, shear_x, shear_y, solarize, solarize_add, translate_x, translate_y (no identity).
  Factors 0.1 + 0.18·v (0.1–1.9: they brighten and sharpen too), a grey square of ⌊0.01·v·shorter side⌋ px
  (+ 1: PIL's rectangle includes its end point), posterize, rotate and solarize as fixmatch, shear ±0.01·v,
  solarize_add = add ±⌊11·v⌋, clip, invert values ≥ 128, translate ±⌊0.005·v·side⌋ px.

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

Param = Callable[[Tensor, Tensor, Tensor], Tensor]  # (level v, sign ±1, images) → the op's parameter per image


def _factor(bias: float, span: float) -> Param:
    return lambda v, s, x: v * span / LEVEL_MAX + bias


def _unsigned(v: Tensor, s: Tensor, x: Tensor) -> Tensor:
    return v  # ops without a parameter (autocontrast, equalize, identity, invert)


def _pixels(fraction: float, dim: int) -> Param:
    """±⌊v·fraction/10·side⌋ px, in float64 in the official order (`int(float(v) * max_v / 10 * size)`)."""
    return lambda v, s, x: s * torch.floor(v.double() * fraction / LEVEL_MAX * x.shape[dim]).to(v.dtype)


def _paint(x: Tensor, side: Tensor | int, u: Tensor, *, pil: bool, fill: int = GREY) -> Tensor:
    """A `fill` square of `side` px per image (or one int for all), top-left ⌊max(0, u·extent − half)⌋ for the
    uniforms u (2, k), clipped at the far edges. half = side / 2, or (side − 1) / 2 where the square is PIL's
    inclusive rectangle: the official CutoutAbs(v) paints v + 1 px from ⌊max(0, u·extent − v/2)⌋."""
    k, _, h, w = x.shape
    side = torch.as_tensor(side, dtype=torch.float32, device=x.device).expand(k)
    half = (side - 1) / 2 if pil else side / 2
    x0 = torch.floor((u[0] * w - half).clamp_min(0)).long()[:, None, None]
    y0 = torch.floor((u[1] * h - half).clamp_min(0)).long()[:, None, None]
    extent = side.long()[:, None, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    rows = torch.arange(h, device=x.device)[None, :, None]
    inside = (cols >= x0) & (cols < x0 + extent) & (rows >= y0) & (rows < y0 + extent)
    return x.masked_fill(inside[:, None], fill)


class Pool:
    """One op pool: per op, its parameter from (level, sign, images) and the op on (images, parameter), in the
    official order. `positioned` ops also take a uniform position (2, k) drawn per round (the in-pool cutout);
    `pil_cutout`: the closing cutout is placed as PIL's inclusive rectangle, and its side is the official
    int(fraction · width) + 1 (else round(fraction · shorter side), placed as a half-open square)."""

    def __init__(self, name: str, params: dict[str, Param], op_fns: dict[str, Callable], *,
                 positioned: tuple[str, ...] = (), pil_cutout: bool = False) -> None:
        assert tuple(params) == tuple(op_fns), name
        self.name, self.params, self.ops = name, params, op_fns
        self.names = tuple(op_fns)
        self.positioned, self.pil_cutout = positioned, pil_cutout
        self.geometric = tuple(n for n in ops.MATRICES if n in op_fns)  # applied together: one affine gather
        self.groups = tuple(n for n in self.names if n not in self.geometric and n != "identity") + ("geometric",)
        none = len(self.groups)
        self.group_of = torch.tensor([self.groups.index("geometric") if n in self.geometric
                                      else self.groups.index(n) if n in self.groups else none
                                      for n in self.names] + [none])  # op index (len(names) = none) → group
        self.slot = torch.tensor([self.geometric.index(n) if n in self.geometric else 0 for n in self.names])

    def cutout_side(self, fraction: float, h: int, w: int) -> int:
        """The closing cutout's side in px for a fraction of the image (0 = none)."""
        if fraction <= 0:
            return 0
        if self.pil_cutout:
            return int(fraction * w) + 1  # CutoutAbs(img, int(width · fraction)) paints one more px
        return int(math.floor(fraction * min(h, w) + 0.5))


COMMON_OPS: dict[str, Callable] = {
    "autocontrast": lambda x, p: ops.autocontrast(x),
    "brightness": ops.brightness,
    "color": ops.color,
    "contrast": ops.contrast,
    "equalize": lambda x, p: ops.equalize(x),
    "posterize": ops.posterize,
    "rotate": ops.rotate,
    "sharpness": ops.sharpness,
    "shear_x": ops.shear_x,
    "shear_y": ops.shear_y,
    "solarize": ops.solarize,
    "translate_x": ops.translate_x,
    "translate_y": ops.translate_y,
}
_POSTERIZE: Param = lambda v, s, x: torch.floor(v * 4 / LEVEL_MAX) + 4  # noqa: E731
_ROTATE: Param = lambda v, s, x: s * torch.floor(v * 30 / LEVEL_MAX)  # noqa: E731
_SOLARIZE: Param = lambda v, s, x: 256 - torch.floor(v * 256 / LEVEL_MAX)  # noqa: E731


def _shear(span: float) -> Param:
    return lambda v, s, x: s * v * span / LEVEL_MAX


FIXMATCH = Pool("fixmatch", {
    "autocontrast": _unsigned,
    "brightness": _factor(0.05, 0.9),
    "color": _factor(0.05, 0.9),
    "contrast": _factor(0.05, 0.9),
    "equalize": _unsigned,
    "identity": _unsigned,
    "posterize": _POSTERIZE,
    "rotate": _ROTATE,
    "sharpness": _factor(0.05, 0.9),
    "shear_x": _shear(0.3),
    "shear_y": _shear(0.3),
    "solarize": _SOLARIZE,
    "translate_x": _pixels(0.3, 3),
    "translate_y": _pixels(0.3, 2),
}, {**{n: COMMON_OPS[n] for n in ("autocontrast", "brightness", "color", "contrast", "equalize")},
    "identity": lambda x, p: x,
    **{n: COMMON_OPS[n] for n in ("posterize", "rotate", "sharpness", "shear_x", "shear_y", "solarize",
                                  "translate_x", "translate_y")}})

IDO = Pool("ido", {
    "autocontrast": _unsigned,
    "brightness": _factor(0.1, 1.8),
    "color": _factor(0.1, 1.8),
    "contrast": _factor(0.1, 1.8),
    "cutout": lambda v, s, x: torch.floor(v.double() * 0.1 / LEVEL_MAX * min(x.shape[2:])).to(v.dtype),
    "equalize": _unsigned,
    "invert": _unsigned,
    "posterize": _POSTERIZE,
    "rotate": _ROTATE,
    "sharpness": _factor(0.1, 1.8),
    "shear_x": _shear(0.1),
    "shear_y": _shear(0.1),
    "solarize": _SOLARIZE,
    "solarize_add": lambda v, s, x: s * torch.floor(v * 110 / LEVEL_MAX),
    "translate_x": _pixels(0.05, 3),
    "translate_y": _pixels(0.05, 2),
}, {**{n: COMMON_OPS[n] for n in ("autocontrast", "brightness", "color", "contrast")},
    "cutout": lambda x, size, u: _paint(x, size + 1, u, pil=True),  # CutoutAbs(size): size + 1 px, PIL-placed
    "equalize": COMMON_OPS["equalize"],
    "invert": lambda x, p: ops.invert(x),
    **{n: COMMON_OPS[n] for n in ("posterize", "rotate", "sharpness", "shear_x", "shear_y", "solarize")},
    "solarize_add": ops.solarize_add,
    **{n: COMMON_OPS[n] for n in ("translate_x", "translate_y")}}, positioned=("cutout",), pil_cutout=True)

POOLS = {pool.name: pool for pool in (FIXMATCH, IDO)}
# The fixmatch pool under its earlier names.
POOL, OPS, NAMES, GEOMETRIC, GROUPS = FIXMATCH.params, FIXMATCH.ops, FIXMATCH.names, FIXMATCH.geometric, FIXMATCH.groups


def _geometric(x: Tensor, op: Tensor, v: Tensor, s: Tensor, pool: Pool) -> Tensor:
    """Each image's geometric op as one affine gather: the five matrices per image, each image taking its own."""
    h, w = x.shape[2:]
    matrices = torch.stack([ops.MATRICES[n](pool.params[n](v, s, x), h, w) for n in pool.geometric])  # (5, k, 6)
    return ops.affine(x, matrices[pool.slot.to(x.device)[op], torch.arange(len(x), device=x.device)])


def apply_ops(x: Tensor, op: Tensor, level: Tensor, sign: Tensor, *, pool: Pool = FIXMATCH,
              position: Tensor | None = None) -> Tensor:
    """Apply op `pool.names[op[i]]` at `level[i]`, `sign[i]` (and `position[:, i]` for a positioned op) to image
    i (op = len(pool.names): none). One host sync."""
    group = pool.group_of.to(x.device)[op]
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group, minlength=len(pool.groups) + 1).tolist()
    out = x.clone()
    start = 0
    for name, count in zip(pool.groups, counts):
        if count:
            rows = order[start:start + count]
            images, v, s = x[rows], level[rows].to(torch.float32), sign[rows].to(torch.float32)
            if name == "geometric":
                out[rows] = _geometric(images, op[rows], v, s, pool)
            elif name in pool.positioned:
                out[rows] = pool.ops[name](images, pool.params[name](v, s, images), position[:, rows])
            else:
                out[rows] = pool.ops[name](images, pool.params[name](v, s, images))
        start += count
    return out


def cutout(x: Tensor, side: int, generator: torch.Generator, *, fill: int = GREY, pil: bool = False) -> Tensor:
    """A grey square of `side` px per image, centre uniform in the image, top-left ⌊max(0, centre − side/2)⌋
    (pil: ⌊max(0, centre − (side − 1)/2)⌋, the official CutoutAbs(side − 1) exactly), clipped at the far edges.
    (The fixmatch pool's official CutoutAbs(16) paints 17 px, as PIL's rectangle includes its end point.)"""
    if side <= 0:
        return x
    centre = torch.rand(2, x.shape[0], generator=generator, device=x.device)
    return _paint(x, side, centre, pil=pil, fill=fill)


def randaugment(x: Tensor, n: int, m: int, generator: torch.Generator, *, cutout_side: int = 0,
                pool: str = "fixmatch") -> Tensor:
    """The pool's RandAugment(n, m) on a uint8 batch (B, C, H, W), then a grey cutout of `cutout_side` px
    (0 = none; `cutout_side()` gives the pool's side for a fraction)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"randaugment takes uint8 images, got {x.dtype}")
    spec = POOLS[pool]
    b, device = x.shape[0], x.device
    for _ in range(n):
        op = torch.randint(len(spec.names), (b,), generator=generator, device=device)
        applied = torch.rand(b, generator=generator, device=device) < 0.5
        level = torch.randint(1, m, (b,), generator=generator, device=device)
        sign = torch.where(torch.rand(b, generator=generator, device=device) < 0.5, -1, 1)
        position = torch.rand(2, b, generator=generator, device=device) if spec.positioned else None
        x = apply_ops(x, torch.where(applied, op, len(spec.names)), level, sign, pool=spec, position=position)
    return cutout(x, cutout_side, generator, pil=spec.pil_cutout)


def cutout_side(fraction: float, h: int, w: int, pool: str = "fixmatch") -> int:
    """The closing cutout's side in px for a fraction of the image: fixmatch 0.5 → 16 px at 32; ido 0.15 → 5 px at
    32 (the official int(0.15 · 32) = 4, painted inclusively)."""
    return POOLS[pool].cutout_side(fraction, h, w)
