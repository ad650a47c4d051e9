"""RandAugment (components.training.randaugment) and the augmenter's strong/pad options: each op against a
simple reference (and against PIL, the official implementation's library, where installed), the levels of both
pools (FixMatch's 14 ops, IDO's 16) against the official ranges, the batched application against per-image
application, determinism, dtypes, and the config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from components.config import AugmentParams
from components.errors import LnlError
from components.training import image_ops as io
from components.training import randaugment as ra
from components.training.augment import Augmenter
from components.training.distributed import Distributed, ShardedAugmenter

torch.set_num_threads(1)


def _images(b: int = 6, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    x = torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    x[1] = x[1] // 4 + 60  # a low-contrast image
    x[2, :, :, : w // 2] = 200  # a flat half
    return x


def _full(value: float, n: int = 6) -> torch.Tensor:
    return torch.full((n,), float(value))


# --- the ops against simple references -------------------------------------------------------------------------


def test_exact_pixel_ops():
    x = torch.tensor([0, 1, 63, 64, 127, 128, 200, 255], dtype=torch.uint8).view(1, 1, 2, 4)
    assert torch.equal(ra.OPS["identity"](x, None), x)
    assert io.solarize(x, _full(128, 1)).flatten().tolist() == [0, 1, 63, 64, 127, 127, 55, 0]
    assert io.posterize(x, _full(4, 1)).flatten().tolist() == [0, 0, 48, 64, 112, 128, 192, 240]
    assert io.brightness(x, _full(0.5, 1)).flatten().tolist() == [0, 0, 31, 32, 63, 64, 100, 127]
    stretched = io.autocontrast(torch.tensor([10, 20, 30], dtype=torch.uint8).view(1, 1, 1, 3))
    assert stretched.flatten().tolist() == [0, 127, 255]
    flat = torch.full((1, 1, 3, 3), 7, dtype=torch.uint8)
    assert torch.equal(io.autocontrast(flat), flat) and torch.equal(io.equalize(flat), flat)


def test_rotate_by_90_is_rot90_and_translate_shifts():
    x = _images(h=8, w=8)
    assert torch.equal(io.rotate(x, _full(90)), torch.rot90(x, 1, dims=(2, 3)))
    assert torch.equal(io.rotate(x, _full(-90)), torch.rot90(x, -1, dims=(2, 3)))
    right = io.translate_x(x, _full(-3))  # PIL's convention: a negative offset moves the content right
    assert torch.equal(right[..., 3:], x[..., :-3]) and not right[..., :3].any()
    up = io.translate_y(x, _full(2))
    assert torch.equal(up[:, :, :-2], x[:, :, 2:]) and not up[:, :, -2:].any()
    sheared = io.shear_x(x, _full(0.0))
    assert torch.equal(sheared, x)


def test_colour_ops_on_grey_images_and_factor_one():
    x = _images()
    grey = io.grey(x).expand_as(x).contiguous()
    assert torch.equal(io.color(grey, _full(0.3)), grey)  # a grey image has no colour to remove
    for name in ("brightness", "color", "contrast", "sharpness"):
        assert torch.equal(ra.OPS[name](x, _full(1.0)), x)  # factor 1 = the image itself


@pytest.mark.parametrize(("name", "param", "pil"), [
    ("brightness", 0.41, lambda im: _enhance("Brightness", im, 0.41)),
    ("color", 0.41, lambda im: _enhance("Color", im, 0.41)),
    ("contrast", 0.14, lambda im: _enhance("Contrast", im, 0.14)),
    ("sharpness", 0.86, lambda im: _enhance("Sharpness", im, 0.86)),
    ("autocontrast", 0, lambda im: _ops().autocontrast(im)),
    ("equalize", 0, lambda im: _ops().equalize(im)),
    ("posterize", 5, lambda im: _ops().posterize(im, 5)),
    ("solarize", 102, lambda im: _ops().solarize(im, 102)),
    ("rotate", 21, lambda im: im.rotate(21)),
    ("rotate", -9, lambda im: im.rotate(-9)),
    ("shear_x", 0.27, lambda im: im.transform(im.size, _affine(), (1, 0.27, 0, 0, 1, 0))),
    ("shear_y", -0.12, lambda im: im.transform(im.size, _affine(), (1, 0, 0, -0.12, 1, 0))),
    ("translate_x", 3, lambda im: im.transform(im.size, _affine(), (1, 0, 3, 0, 1, 0))),
    ("translate_y", -2, lambda im: im.transform(im.size, _affine(), (1, 0, 0, 0, 1, -2))),
])
def test_each_op_equals_pil(name, param, pil):
    """The official RandAugmentMC runs these PIL calls per image; the batched ops give the same bytes."""
    image = pytest.importorskip("PIL.Image")
    x = _images()
    ours = ra.OPS[name](x, _full(param))
    assert ours.dtype == torch.uint8 and ours.shape == x.shape
    expected = [np.asarray(pil(image.fromarray(t.permute(1, 2, 0).numpy()))) for t in x]
    assert torch.equal(ours, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2))


def _enhance(kind: str, im, factor: float):
    from PIL import ImageEnhance

    return getattr(ImageEnhance, kind)(im).enhance(factor)


def _ops():
    from PIL import ImageOps

    return ImageOps


def _affine():
    from PIL import Image

    return Image.AFFINE


def test_levels_map_to_the_official_magnitudes():
    v, plus = torch.arange(1, 10, dtype=torch.float32), torch.ones(9)
    x = torch.zeros(9, 1, 32, 32, dtype=torch.uint8)
    pool = {name: ra.POOL[name](v, plus, x).tolist() for name in ra.NAMES}
    assert pool["brightness"] == pytest.approx([0.05 + 0.09 * i for i in range(1, 10)])
    assert pool["posterize"] == [4, 4, 5, 5, 6, 6, 6, 7, 7]
    assert pool["rotate"] == [3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert pool["solarize"] == [256 - int(i * 25.6) for i in range(1, 10)]
    assert pool["translate_x"] == [int(i * 0.03 * 32) for i in range(1, 10)]
    assert pool["shear_y"] == pytest.approx([0.03 * i for i in range(1, 10)])
    assert len(ra.NAMES) == 14


# --- the batched policy ---------------------------------------------------------------------------------------


def test_mixed_batch_equals_each_image_on_its_own():
    """One round (n = 1): image i gets op[i] at level[i], sign[i] exactly as if it were alone."""
    x = _images(b=64, h=16, w=16)
    out = ra.randaugment(x, 1, 10, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)  # replay the draws: op, applied, level, sign
    op = torch.randint(14, (64,), generator=gen)
    applied = torch.rand(64, generator=gen) < 0.5
    level = torch.randint(1, 10, (64,), generator=gen)
    sign = torch.where(torch.rand(64, generator=gen) < 0.5, -1, 1)
    assert len(set(op[applied].tolist())) >= 10  # a genuinely mixed batch
    for i in range(64):
        one = x[i : i + 1]
        if applied[i]:
            name = ra.NAMES[int(op[i])]
            one = ra.OPS[name](one, ra.POOL[name](level[i : i + 1].float(), sign[i : i + 1].float(), one))
        assert torch.equal(out[i : i + 1], one), f"image {i}"


def test_randaugment_is_deterministic_under_a_generator_and_keeps_uint8():
    x = _images(b=32, h=32, w=32)
    a = ra.randaugment(x, 2, 10, torch.Generator().manual_seed(1), cutout_side=16)
    b = ra.randaugment(x, 2, 10, torch.Generator().manual_seed(1), cutout_side=16)
    c = ra.randaugment(x, 2, 10, torch.Generator().manual_seed(2), cutout_side=16)
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(TypeError, match="uint8"):
        ra.randaugment(x.float(), 2, 10, torch.Generator())


def test_cutout_is_a_grey_square_placed_as_officially():
    x = torch.zeros(400, 1, 32, 32, dtype=torch.uint8)
    out = ra.cutout(x, 16, torch.Generator().manual_seed(0))
    grey = out[:, 0] == ra.GREY
    assert set(out.unique().tolist()) == {0, ra.GREY}
    sizes = grey.sum((1, 2))
    assert int(sizes.max()) == 256 and int(sizes.min()) >= 8 * 8  # clipped at the far edges only
    rows, cols = grey.any(2), grey.any(1)
    assert bool((rows.sum(1) <= 16).all() and (cols.sum(1) <= 16).all())
    # top-left = ⌊max(0, 32u − 8)⌋ covers pixel (0, 0) iff both u < 9/32: P = 0.079; far corner: both u ≥ 3/4, 0.0625
    assert 0.05 < float(grey[:, 0, 0].float().mean()) < 0.11 and 0.035 < float(grey[:, 31, 31].float().mean()) < 0.09


# --- the augmenter --------------------------------------------------------------------------------------------


def _strong_cfg(**update) -> AugmentParams:
    return AugmentParams(**{"crop_padding": 4, "flip": True, "strong": "randaugment", **update})


def test_strong_randaugment_view_keeps_uint8_and_floats():
    x = _images(b=16, h=32, w=32)
    aug = Augmenter(_strong_cfg(), seed=0)
    out = aug.strong(x)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert (out == ra.GREY).any((1, 2, 3)).float().mean() > 0.9  # the always-on cutout
    floats = Augmenter(_strong_cfg(), seed=0).strong(x.float() / 255)
    assert floats.dtype == torch.float32
    torch.testing.assert_close(floats, out.float() / 255, rtol=0, atol=1e-6)  # floats go through 8 bits
    vectors = torch.ones(4000, 3)
    dropped = Augmenter(_strong_cfg(strong_noise_std=0.0), seed=0).strong(vectors)
    assert 0.17 < float((dropped == 0).float().mean()) < 0.23  # vector data: the basic feature dropout


def test_reflect_and_zero_padding_shift_like_pad_then_crop():
    x = _images(b=40, h=8, w=8)
    for mode, torch_mode in (("reflect", "reflect"), ("zero", "constant")):
        out = Augmenter(AugmentParams(crop_padding=3, pad_mode=mode, noise_std=0.0), seed=4).weak(x)
        assert out.dtype == torch.uint8
        padded = F.pad(x.float(), (3, 3, 3, 3), mode=torch_mode).to(torch.uint8)
        crops = {(dy, dx) for dy in range(7) for dx in range(7)}
        for o, p in zip(out, padded):
            assert any(torch.equal(o, p[:, dy : dy + 8, dx : dx + 8]) for dy, dx in crops)
    with pytest.raises(LnlError, match=r"augment.crop_padding: 8 must be smaller than the image side \(8 px\)"):
        Augmenter(AugmentParams(crop_padding=8, pad_mode="reflect"), seed=0).weak(x)


def test_sharded_randaugment_views_equal_the_single_process_views():
    x = _images(b=10, h=16, w=16)
    cfg = _strong_cfg(crop_padding=2)
    expected = Augmenter(cfg, seed=3).strong(x)
    for rank in range(3):
        state = Distributed(rank=rank, world=3)
        part = state.shard(torch.arange(10))
        got = ShardedAugmenter(Augmenter(cfg, seed=3), state).strong(x[part])
        assert torch.equal(got, expected[part])


def test_randaugment_params_are_validated():
    with pytest.raises(ValidationError, match="randaugment.m"):
        AugmentParams(randaugment={"n": 2, "m": 11})
    with pytest.raises(ValidationError, match="strong"):
        AugmentParams(strong="autoaugment")
    with pytest.raises(ValidationError, match="pad_mode"):
        AugmentParams(pad_mode="edge")


# --- IDO's pool (RandAugmentwogeo: `augment.randaugment.pool: ido`) --------------------------------------------


def test_ido_pool_is_the_official_sixteen_op_list():
    assert ra.IDO.names == (
        "autocontrast", "brightness", "color", "contrast", "cutout", "equalize", "invert", "posterize", "rotate",
        "sharpness", "shear_x", "shear_y", "solarize", "solarize_add", "translate_x", "translate_y")
    assert "identity" not in ra.IDO.names and len(ra.FIXMATCH.names) == 14
    assert set(ra.POOLS) == {"fixmatch", "ido"} and ra.POOL is ra.FIXMATCH.params


def _levels(pool, side: int, sign: float = 1.0) -> dict[str, list[float]]:
    v = torch.arange(1, 10, dtype=torch.float32)
    x = torch.zeros(9, 3, side, side, dtype=torch.uint8)
    return {name: pool.params[name](v, torch.full((9,), sign), x).tolist() for name in pool.names}


def test_ido_levels_map_to_the_official_magnitudes():
    """RandAugmentwogeo's new_augment_pool: (op, max_v, bias) → max_v · v / 10 + bias, int() where the op wants one."""
    at32, at224, minus = _levels(ra.IDO, 32), _levels(ra.IDO, 224), _levels(ra.IDO, 32, -1.0)
    for name in ("brightness", "color", "contrast", "sharpness"):
        assert at32[name] == pytest.approx([0.1 + 0.18 * i for i in range(1, 10)])  # (1.8, 0.1)
        assert minus[name] == at32[name]  # factors are never signed
    assert at32["shear_x"] == pytest.approx([0.01 * i for i in range(1, 10)])  # (0.1, 0)
    assert minus["shear_y"] == pytest.approx([-0.01 * i for i in range(1, 10)])
    assert at32["translate_x"] == [0, 0, 0, 0, 0, 0, 1, 1, 1]  # (0.05, 0): int(0.005 · v · 32)
    assert at224["translate_y"] == [int(i * 0.05 / 10 * 224) for i in range(1, 10)] == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert minus["translate_x"] == [-0.0] * 6 + [-1, -1, -1]
    assert at32["cutout"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # (0.1, 0): int(0.01 · v · 32), never signed
    assert at224["cutout"] == [int(i * 0.1 / 10 * 224) for i in range(1, 10)] == [2, 4, 6, 8, 11, 13, 15, 17, 20]
    assert at32["solarize_add"] == [11 * i for i in range(1, 10)] and minus["solarize_add"][-1] == -99  # (110, 0)
    assert at32["posterize"] == [4, 4, 5, 5, 6, 6, 6, 7, 7]  # (4, 4), as fixmatch
    assert at32["rotate"] == [3 * i for i in range(1, 10)] and minus["rotate"][0] == -3  # (30, 0)
    assert at32["solarize"] == [256 - int(i * 25.6) for i in range(1, 10)]  # (256, 0)
    # the full level range 0..10 spans the factors 0.1-1.9 (fixmatch: 0.05-0.95)
    ends = torch.tensor([0.0, 10.0])
    assert ra.IDO.params["color"](ends, ends, None).tolist() == pytest.approx([0.1, 1.9])
    assert ra.FIXMATCH.params["color"](ends, ends, None).tolist() == pytest.approx([0.05, 0.95])


def _official_cutout(image, v: int, u0: float, u1: float):
    """The official CutoutAbs(img, v) with its two uniforms given: PIL's rectangle from the rounded-down corner."""
    from PIL import ImageDraw

    w, h = image.size
    x0, y0 = int(max(0, u0 * w - v / 2.0)), int(max(0, u1 * h - v / 2.0))
    image = image.copy()
    ImageDraw.Draw(image).rectangle((x0, y0, int(min(w, x0 + v)), int(min(h, y0 + v))), (127, 127, 127))
    return image


def _solarize_input(image, add: int):
    from PIL import Image

    return Image.fromarray(np.clip(np.asarray(image).astype(int) + add, 0, 255).astype(np.uint8))


def _pil_batch(x: torch.Tensor, fn) -> torch.Tensor:
    image = pytest.importorskip("PIL.Image")
    out = [np.asarray(fn(i, image.fromarray(t.permute(1, 2, 0).numpy()))) for i, t in enumerate(x)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def test_ido_only_ops_equal_pil():
    x = _images()
    expected = _pil_batch(x, lambda i, im: _ops().invert(im))
    assert torch.equal(ra.IDO.ops["invert"](x, None), expected)
    for add in (33, -55, 99):  # SolarizeAdd: numpy add and clip, then PIL's solarize at 128
        expected = _pil_batch(x, lambda i, im: _ops().solarize(_solarize_input(im, add), 128))
        assert torch.equal(ra.IDO.ops["solarize_add"](x, _full(add)), expected), add
    u = torch.tensor([[0.0, 0.5, 31 / 32, 0.25, 7 / 8, 1 / 16], [0.5, 0.0, 31 / 32, 15 / 16, 1 / 8, 3 / 4]])
    sizes = torch.tensor([0.0, 1.0, 2.0, 2.0, 0.0, 1.0])  # the parameter: the official v, painted v + 1 px
    ours = ra.IDO.ops["cutout"](x, sizes, u)
    expected = _pil_batch(x, lambda i, im: _official_cutout(im, int(sizes[i]), float(u[0, i]), float(u[1, i])))
    assert torch.equal(ours, expected)


def test_ido_closing_cutout_is_the_official_cutout_abs():
    """RandAugmentwogeo closes with CutoutAbs(img, int(width · 0.15)): 4 at 32 px, painted 5 × 5."""
    assert ra.cutout_side(0.15, 32, 32, "ido") == 5 and ra.cutout_side(0.15, 224, 224, "ido") == 34
    assert ra.cutout_side(0.5, 32, 32) == 16 and ra.cutout_side(0.0, 32, 32, "ido") == 0
    x = _images(b=24, h=32, w=32)
    ours = ra.cutout(x, 5, torch.Generator().manual_seed(3), pil=True)
    u = torch.rand(2, 24, generator=torch.Generator().manual_seed(3))  # replay the centre draw
    expected = _pil_batch(x, lambda i, im: _official_cutout(im, 4, float(u[0, i]), float(u[1, i])))
    assert torch.equal(ours, expected)


def test_ido_mixed_batch_equals_each_image_on_its_own():
    x = _images(b=96, h=16, w=16)
    out = ra.randaugment(x, 1, 10, torch.Generator().manual_seed(7), pool="ido")
    gen = torch.Generator().manual_seed(7)  # replay: op, applied, level, sign, then the in-pool cutout's position
    op = torch.randint(16, (96,), generator=gen)
    applied = torch.rand(96, generator=gen) < 0.5
    level = torch.randint(1, 10, (96,), generator=gen)
    sign = torch.where(torch.rand(96, generator=gen) < 0.5, -1, 1)
    position = torch.rand(2, 96, generator=gen)
    assert len(set(op[applied].tolist())) >= 13 and "cutout" in {ra.IDO.names[int(o)] for o in op[applied]}
    for i in range(96):
        one = x[i : i + 1]
        if applied[i]:
            name = ra.IDO.names[int(op[i])]
            p = ra.IDO.params[name](level[i : i + 1].float(), sign[i : i + 1].float(), one)
            one = ra.IDO.ops[name](one, p, position[:, i : i + 1]) if name == "cutout" else ra.IDO.ops[name](one, p)
        assert torch.equal(out[i : i + 1], one), f"image {i}"


def test_ido_pool_through_the_augmenter():
    x = _images(b=64, h=32, w=32)
    cfg = _strong_cfg(randaugment={"pool": "ido", "n": 2, "m": 10, "cutout": 0.15})
    a, b = Augmenter(cfg, seed=0).strong(x), Augmenter(cfg, seed=0).strong(x)
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, Augmenter(_strong_cfg(randaugment={"n": 2, "m": 10, "cutout": 0.15}), seed=0).strong(x))
    grey = (a == ra.GREY).all(1)  # the closing cutout: a 5 × 5 grey square (clipped at the far edges)
    assert int(grey.sum((1, 2)).max()) >= 25 and bool((grey.any(2).sum(1) <= 8).all())
    assert AugmentParams().randaugment.pool == "fixmatch"
    with pytest.raises(ValidationError, match="randaugment.pool"):
        AugmentParams(randaugment={"pool": "autoaugment"})
