"""components.training.augment: the weak and strong views of images and feature vectors."""

from __future__ import annotations

import pytest
import torch

from components.config import AugmentParams
from components.training.augment import Augmenter

torch.set_num_threads(1)

# --- Augmenter -------------------------------------------------------------------------------------------------


def _images(b: int = 6, c: int = 1, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5  # no zeros


def test_augment_shapes_preserved():
    aug = Augmenter(AugmentParams(crop_padding=2, flip=True, cutout=0.25), seed=0)
    for x in (_images(), _images(c=3, h=10, w=7), torch.randn(9, 5)):
        assert aug.weak(x).shape == x.shape
        assert aug.strong(x).shape == x.shape
        assert aug.weak(x).dtype == x.dtype


def test_augment_deterministic_by_seed():
    cfg = AugmentParams(crop_padding=2, flip=True, cutout=0.3)
    x = _images()
    a, b, c = Augmenter(cfg, seed=7), Augmenter(cfg, seed=7), Augmenter(cfg, seed=8)
    wa, sa = a.weak(x), a.strong(x)
    wb, sb = b.weak(x), b.strong(x)
    assert torch.equal(wa, wb) and torch.equal(sa, sb)
    assert not torch.equal(wa, c.weak(x))
    # the generator advances: a second call differs from the first
    assert not torch.equal(wa, a.weak(x))


def test_weak_view_is_identity_without_shift_flip_noise():
    aug = Augmenter(AugmentParams(crop_padding=0, flip=False, noise_std=0.0), seed=0)
    x = _images()
    assert torch.equal(aug.weak(x), x)
    v = torch.randn(4, 3)
    assert torch.equal(aug.weak(v), v)


def test_shift_moves_content_by_at_most_padding():
    aug = Augmenter(AugmentParams(crop_padding=1, flip=False, noise_std=0.0), seed=3)
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    out = aug.weak(x)
    assert torch.equal(out.sum((1, 2, 3)), torch.ones(64))  # the single pixel stays inside the image
    positions = {tuple(map(int, torch.nonzero(o[0])[0])) for o in out}
    assert positions <= {(r, c) for r in (3, 4, 5) for c in (3, 4, 5)}
    assert len(positions) > 1


def test_flip_mirrors_horizontally():
    aug = Augmenter(AugmentParams(crop_padding=0, flip=True, noise_std=0.0), seed=0)
    x = _images(b=32)
    out = aug.weak(x)
    for o, xi in zip(out, x):
        assert torch.equal(o, xi) or torch.equal(o, xi.flip(2))
    flipped = sum(not torch.equal(o, xi) for o, xi in zip(out, x))
    assert 0 < flipped < 32


@pytest.mark.parametrize("frac, side", [(0.25, 2), (0.375, 3), (0.5, 4)])
def test_cutout_zeroes_a_square(frac, side):
    cfg = AugmentParams(crop_padding=0, flip=False, cutout=frac, strong_noise_std=0.0)
    aug = Augmenter(cfg, seed=1)
    x = _images(b=200)
    out = aug.strong(x)
    full = 0
    for o, xi in zip(out, x):
        zero = o[0] == 0
        rows, cols = torch.nonzero(zero, as_tuple=True)
        assert rows.numel() > 0, "every image gets a cutout"
        # the zeroed pixels form one axis-aligned rectangle of at most side x side
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        assert r1 - r0 + 1 <= side and c1 - c0 + 1 <= side
        assert bool(zero[r0 : r1 + 1, c0 : c1 + 1].all())
        assert torch.equal(o[0][~zero], xi[0][~zero])  # everything else untouched
        full += rows.numel() == side * side
    assert full > 0  # away from the borders the square is exactly side x side


def test_vector_data_noise_and_dropout():
    scale = torch.tensor([1.0, 100.0])
    aug = Augmenter(AugmentParams(noise_std=1.0, strong_noise_std=0.0), feature_scale=scale, seed=0)
    x = torch.zeros(4000, 2)
    noise = aug.weak(x)
    std = noise.std(0)
    assert 0.9 < float(std[0]) < 1.1 and 90 < float(std[1]) < 110  # noise relative to each feature's spread
    ones = torch.ones(4000, 2)
    strong = aug.strong(ones)
    assert set(strong.unique().tolist()) <= {0.0, 1.0}
    assert 0.17 < float((strong == 0).float().mean()) < 0.23  # 20 % feature dropout
