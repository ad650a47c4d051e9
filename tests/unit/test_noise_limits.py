"""The information limit of symmetric noise: checked against the labels the generators draw, refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import validate_params
from components.errors import LnlError
from components.noise import inject_noise
from components.noise_limits import information_limit, noise_limit_problem


def transition(kind: str, rate: float, n_classes: int, n: int = 60_000) -> np.ndarray:
    """The empirical P(noisy label | true label) of a generator."""
    y = np.repeat(np.arange(n_classes), n // n_classes)
    noisy, _ = inject_noise(y, n_classes=n_classes, kind=kind, rate=rate, seed=0)
    return np.stack([np.bincount(noisy[y == c], minlength=n_classes) / (y == c).sum() for c in range(n_classes)])


@pytest.mark.parametrize("kind", ["symmetric_exclusive", "symmetric_exclusive_exact"])
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_at_the_exclusive_limit_the_true_label_is_no_likelier_than_another(kind, n_classes):
    limit = information_limit(kind, n_classes)
    assert limit == pytest.approx((n_classes - 1) / n_classes)
    at = transition(kind, limit, n_classes)
    np.testing.assert_allclose(at, np.full_like(at, 1 / n_classes), atol=0.02)  # uniform: no information
    below = transition(kind, limit - 0.1, n_classes)
    assert (np.diag(below) > below.max(1, where=~np.eye(n_classes, dtype=bool), initial=0) + 0.05).all()


@pytest.mark.parametrize("kind", ["symmetric_inclusive", "symmetric_inclusive_per_sample"])
def test_inclusive_noise_keeps_information_below_a_rate_of_one(kind):
    assert information_limit(kind, 2) is None and noise_limit_problem(kind, 0.95, 2) is None
    high = transition(kind, 0.95, 2)  # the true label keeps 1 - r + r/C = 0.525 > r/C = 0.475
    assert (np.diag(high) > 0.5).all()


def test_the_noise_line_names_rate_classes_and_limit():
    assert noise_limit_problem("symmetric_exclusive", 0.6, 2) == (
        "noise.rate 0.6 leaves the labels without information: with 2 classes, symmetric_exclusive noise keeps the "
        "true label (1 - rate = 0.4) no more often than it gives each other class (rate/(C-1) = 0.6); use a rate "
        "below (C-1)/C = 0.5")
    assert noise_limit_problem("symmetric_exclusive", 0.49, 2) is None
    assert noise_limit_problem("pairflip", 0.6, 2) is None


def test_params_refuse_it_where_the_source_fixes_the_class_count():
    with pytest.raises(LnlError, match=r"^params.yaml: noise.rate 0.9 leaves the labels without information: with "
                                       r"10 classes, symmetric_exclusive_exact noise"):
        validate_params({"noise": {"kind": "symmetric_exclusive_exact", "rate": 0.9}}, source="params.yaml")
    validate_params({"noise": {"kind": "symmetric_exclusive", "rate": 0.89}})  # digits: 10 classes, below 0.9
    validate_params({"data": {"source": "npz", "path": "x.npz"}, "noise": {"rate": 0.6}})  # C known to the stage
