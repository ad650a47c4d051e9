"""Tests for components.noise: the conventions of docs/parameters.md#noise-kinds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from components.errors import LnlError
from components.noise import NAMED_CLASS_MAPS, NOISE_KINDS, inject_noise, transition_matrix
from components.noise.cifar100 import COARSE_LABELS
from components.noise.generators import NAMED_MAP_CLASSES

C = 10


def _labels(n: int, n_classes: int = C, seed: int = 123) -> np.ndarray:
    """Unbalanced but non-empty labels, so per-class counts differ."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])


def _features(n: int, d: int = 20, seed: int = 7) -> np.ndarray:
    """Integer features 0..16, scaled like raw pixels (sklearn-digits style)."""
    return np.random.default_rng(seed).integers(0, 17, size=(n, d)).astype(np.float64)


def _kwargs(kind: str, n: int) -> dict:
    """Extra arguments each kind needs."""
    if kind == "instance":
        return {"features": _features(n)}
    if kind == "classmap":
        return {"class_map": "cifar10"}
    return {}


def _floor(x: float) -> int:
    return int(math.floor(x + 1e-9))


# --------------------------------------------------------------------------- exact conventions


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.5])
def test_symmetric_inclusive_touches_exactly_floor_rn(rate: float) -> None:
    y = _labels(5003)
    noisy, m = inject_noise(y, n_classes=C, kind="symmetric_inclusive", rate=rate, seed=1)
    k = _floor(rate * y.size)
    # Reproduce the draw: exactly k indices are selected, each gets a uniform label in [0, C).
    rng = np.random.default_rng(1)
    chosen = rng.choice(y.size, size=k, replace=False)
    new = rng.integers(0, C, size=k)
    assert np.array_equal(noisy[chosen], new)
    untouched = np.setdiff1d(np.arange(y.size), chosen)
    assert np.array_equal(noisy[untouched], y[untouched])
    assert m["realised_rate"] == np.count_nonzero(new != y[chosen]) / y.size
    assert m["expected_rate"] == pytest.approx(k / y.size * (C - 1) / C)
    assert abs(m["realised_rate"] - rate * (C - 1) / C) < 0.03
    assert (noisy == y).sum() > y.size - k  # some chosen samples kept their true class


@pytest.mark.parametrize("rate", [0.2, 0.45])
def test_symmetric_exclusive_exact_counts(rate: float) -> None:
    y = _labels(4000)
    noisy, m = inject_noise(y, n_classes=C, kind="symmetric_exclusive_exact", rate=rate, seed=3)
    n_i = np.bincount(y, minlength=C)
    counts = np.zeros((C, C), dtype=int)
    np.add.at(counts, (y, noisy), 1)
    for i in range(C):
        per_target = _floor(n_i[i] * rate / (C - 1))
        off = np.delete(counts[i], i)
        assert np.all(off == per_target), (i, off, per_target)
        assert counts[i, i] == n_i[i] - per_target * (C - 1)
    moved = sum((C - 1) * _floor(n * rate / (C - 1)) for n in n_i)
    assert m["realised_rate"] == pytest.approx(moved / y.size)
    assert m["expected_rate"] == pytest.approx(moved / y.size)


@pytest.mark.parametrize("rate", [0.2, 0.45])
def test_pairflip_exact_counts(rate: float) -> None:
    y = _labels(3001)
    noisy, m = inject_noise(y, n_classes=C, kind="pairflip", rate=rate, seed=5)
    assert m["convention"] == "pairflip/exact"
    for c in range(C):
        members = noisy[y == c]
        flipped = members[members != c]
        assert flipped.size == _floor(rate * members.size)
        assert np.all(flipped == (c + 1) % C)
    assert m["realised_rate"] == pytest.approx(m["expected_rate"])


def test_symmetric_exclusive_exact_uses_robust_floor() -> None:
    # 0.29 * 100 == 28.999999999999996 in floating point; the count must still be 29.
    y = np.repeat(np.arange(2), 100)
    noisy, _ = inject_noise(y, n_classes=2, kind="pairflip", rate=0.29, seed=0)
    assert np.count_nonzero(noisy[:100] != 0) == 29


# --------------------------------------------------------------------------- per-sample conventions

N_STAT = 20000


def _balanced(n: int = N_STAT, n_classes: int = C) -> np.ndarray:
    return np.arange(n) % n_classes


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_symmetric_exclusive_statistics(rate: float) -> None:
    y = _balanced()
    noisy, m = inject_noise(y, n_classes=C, kind="symmetric_exclusive", rate=rate, seed=11)
    t = np.asarray(m["transition_matrix"])
    assert np.allclose(np.diag(t), 1 - rate, atol=0.04)
    off = t[~np.eye(C, dtype=bool)]
    assert np.allclose(off, rate / (C - 1), atol=0.02)
    assert abs(m["realised_rate"] - rate) < 0.015
    assert m["expected_rate"] == rate


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_symmetric_inclusive_per_sample_statistics(rate: float) -> None:
    y = _balanced()
    noisy, m = inject_noise(y, n_classes=C, kind="symmetric_inclusive_per_sample", rate=rate, seed=2)
    t = np.asarray(m["transition_matrix"])
    assert np.allclose(np.diag(t), 1 - rate + rate / C, atol=0.04)
    assert np.allclose(t[~np.eye(C, dtype=bool)], rate / C, atol=0.02)
    assert abs(m["realised_rate"] - rate * (C - 1) / C) < 0.015
    assert m["expected_rate"] == pytest.approx(rate * (C - 1) / C)


def test_pairflip_per_sample_statistics() -> None:
    y = _balanced()
    noisy, m = inject_noise(y, n_classes=C, kind="pairflip", rate=0.45, seed=4,
                            sampling="per_sample")
    assert m["convention"] == "pairflip/per_sample"
    changed = noisy != y
    assert np.all(noisy[changed] == (y[changed] + 1) % C)
    assert abs(m["realised_rate"] - 0.45) < 0.015
    assert all(abs(r - 0.45) < 0.05 for r in m["per_class_realised"])


# --------------------------------------------------------------------------- class maps


@pytest.mark.parametrize("sampling", ["exact", "per_sample"])
@pytest.mark.parametrize("name", sorted(NAMED_CLASS_MAPS))
def test_named_classmap_only_flips_sources_to_targets(name: str, sampling: str) -> None:
    cmap = NAMED_CLASS_MAPS[name]
    n_classes = NAMED_MAP_CLASSES[name]
    y = _labels(800 * n_classes, n_classes)
    noisy, m = inject_noise(y, n_classes=n_classes, kind="classmap", rate=0.4, seed=9,
                            class_map=name, sampling=sampling)
    changed = np.flatnonzero(noisy != y)
    assert all(int(y[i]) in cmap and int(noisy[i]) == cmap[int(y[i])] for i in changed)
    per_class = m["per_class_realised"]
    for c in range(n_classes):
        if c not in cmap:
            assert per_class[c] == 0.0
        elif sampling == "exact":
            n_c = int(np.count_nonzero(y == c))
            assert per_class[c] == _floor(0.4 * n_c) / n_c
        else:
            assert abs(per_class[c] - 0.4) < 0.07
    assert m["class_map"] == {str(k): v for k, v in sorted(cmap.items())}
    assert m["convention"] == f"classmap/{sampling}"


def test_named_maps_match_spec() -> None:
    assert NAMED_CLASS_MAPS["cifar10"] == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert NAMED_CLASS_MAPS["mnist"] == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    blocks = NAMED_CLASS_MAPS["cifar100"]  # the literature's CIFAR-100 map: a 5×5 cyclic block on [5k, 5k+5)
    assert [blocks[i] for i in range(10)] == [1, 2, 3, 4, 0, 6, 7, 8, 9, 5] and blocks[99] == 95
    assert all(blocks[i] // 5 == i // 5 and blocks[i] != i for i in range(100))


# The CIFAR-100 fine label names (the archive's meta file, alphabetical) of two superclasses, to read the map by:
# aquatic mammals = beaver 4, dolphin 30, otter 55, seal 72, whale 95; people = baby 2, boy 11, girl 35, man 46,
# woman 98 (coarse labels 0 and 14 of the archive's coarse_label_names).
def test_cifar100_superclass_map_on_the_official_class_order() -> None:
    superclass = NAMED_CLASS_MAPS["cifar100_superclass"]
    assert [superclass[i] for i in (4, 30, 55, 72, 95)] == [30, 55, 72, 95, 4]
    assert [superclass[i] for i in (2, 11, 35, 46, 98)] == [11, 35, 46, 98, 2]
    assert sorted(superclass) == list(range(100)) and sorted(superclass.values()) == list(range(100))
    assert all(COARSE_LABELS[t] == COARSE_LABELS[s] and t != s for s, t in superclass.items())
    assert sorted(np.bincount(COARSE_LABELS).tolist()) == [5] * 20
    # cycles of length 5: five steps return every class to itself
    for start in range(100):
        c = start
        for _ in range(5):
            c = superclass[c]
        assert c == start


def test_coarse_table_matches_the_official_labels() -> None:
    """clean_label / clean_coarse_label of CIFAR-100N are the official training labels, in archive order."""
    from tests.unit.noise.test_datasets_real_noise import SHARED

    path = SHARED / "CIFAR-100_human.pt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    from components.noise.real import load_human_labels

    labels = load_human_labels(path)
    fine, coarse = np.asarray(labels["clean_label"]), np.asarray(labels["clean_coarse_label"])
    assert fine.shape == (50000,)
    assert np.array_equal(np.asarray(COARSE_LABELS)[fine], coarse)


def test_named_map_for_another_class_count_is_one_clear_error() -> None:
    with pytest.raises(LnlError, match=r"^named class_map 'cifar100' is for 100 classes; this dataset has 10$"):
        inject_noise(_labels(100), n_classes=C, kind="classmap", rate=0.4, seed=0, class_map="cifar100")


def test_custom_classmap_dict_and_string_keys() -> None:
    y = _balanced(1000, 4)
    noisy, m = inject_noise(y, n_classes=4, kind="classmap", rate=0.3, seed=0,
                            class_map={"0": "3"})
    assert set(np.unique(noisy[y != 0])) == {1, 2, 3}
    assert np.array_equal(noisy[y != 0], y[y != 0])
    assert np.count_nonzero(noisy[y == 0] == 3) == 75
    assert m["class_map"] == {"0": 3}


# --------------------------------------------------------------------------- instance (PTD)


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_instance_realised_rate_close_to_requested(rate: float) -> None:
    n = 5000
    y = _labels(n)
    noisy, m = inject_noise(y, n_classes=C, kind="instance", rate=rate, seed=5,
                            features=_features(n))
    assert abs(m["realised_rate"] - rate) < 0.05
    assert m["expected_rate"] == rate
    assert m["n_features"] == 20 and m["idn_norm_std"] == 0.1
    assert noisy.min() >= 0 and noisy.max() < C


def test_instance_raw_pixel_scale_is_numerically_stable() -> None:
    n, d = 300, 3072
    y = _labels(n)
    x = np.random.default_rng(0).integers(0, 256, size=(n, d)).astype(np.float32)
    noisy, m = inject_noise(y, n_classes=C, kind="instance", rate=0.4, seed=1, features=x)
    assert noisy.min() >= 0 and noisy.max() < C
    assert 0.25 < m["realised_rate"] < 0.55


def test_instance_noise_is_feature_dependent() -> None:
    n = 4000
    y = _labels(n)
    x = _features(n)
    a, _ = inject_noise(y, n_classes=C, kind="instance", rate=0.4, seed=5, features=x)
    b, _ = inject_noise(y, n_classes=C, kind="instance", rate=0.4, seed=5, features=x[::-1].copy())
    assert not np.array_equal(a, b)
    # Raw-scale features make the softmax near one-hot: each class has few confusing targets.
    t = transition_matrix(y, a, C)
    assert np.mean((t > 0).sum(axis=1)) < C


# --------------------------------------------------------------------------- cross-cutting


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_determinism_and_label_range(kind: str) -> None:
    n = 2000
    y = _labels(n)
    kw = _kwargs(kind, n)
    a, ma = inject_noise(y, n_classes=C, kind=kind, rate=0.4, seed=17, **kw)
    b, mb = inject_noise(y, n_classes=C, kind=kind, rate=0.4, seed=17, **kw)
    c, _ = inject_noise(y, n_classes=C, kind=kind, rate=0.4, seed=18, **kw)
    assert np.array_equal(a, b) and ma == mb
    if kind != "none":
        assert not np.array_equal(a, c)
    for noisy in (a, c):
        assert noisy.dtype == np.int64 and noisy.shape == y.shape
        assert noisy.min() >= 0 and noisy.max() < C  # regression: IDO draws label C


def test_inclusive_never_produces_label_c() -> None:
    # IDO's off-by-one drew from 0..C inclusive; with many draws, C would certainly appear.
    y = _balanced(50000)
    noisy, _ = inject_noise(y, n_classes=C, kind="symmetric_inclusive", rate=0.9, seed=0)
    assert noisy.max() == C - 1 and noisy.min() == 0


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_global_rng_untouched(kind: str) -> None:
    n = 500
    y = _labels(n)
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    inject_noise(y, n_classes=C, kind=kind, rate=0.3, seed=1, **_kwargs(kind, n))
    assert np.random.rand() == expected


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_rate_zero_is_identity(kind: str) -> None:
    n = 500
    y = _labels(n)
    noisy, m = inject_noise(y, n_classes=C, kind=kind, rate=0.0, seed=1, **_kwargs(kind, n))
    assert np.array_equal(noisy, y)
    assert m["realised_rate"] == 0.0 and m["expected_rate"] == 0.0


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_manifest_contents_and_json(kind: str) -> None:
    n = 700
    y = _labels(n)
    noisy, m = inject_noise(y, n_classes=C, kind=kind, rate=0.3, seed=2, **_kwargs(kind, n))
    json.loads(json.dumps(m))  # plain Python types only
    for key in ("kind", "convention", "requested_rate", "realised_rate", "per_class_realised",
                "transition_matrix", "expected_rate", "seed", "rng", "generator_version",
                "n_samples", "n_classes"):
        assert key in m
    assert m["kind"] == kind and m["seed"] == 2 and m["requested_rate"] == 0.3
    assert m["rng"] == "numpy.default_rng(PCG64)"
    assert m["n_samples"] == n and m["n_classes"] == C
    assert m["realised_rate"] == pytest.approx(np.mean(noisy != y))
    assert len(m["per_class_realised"]) == C
    assert ("class_map" in m) == (kind == "classmap")


def test_transition_matrix_rows() -> None:
    y = np.array([0, 0, 0, 0, 2, 2])
    noisy = np.array([0, 1, 1, 2, 2, 0])
    t = transition_matrix(y, noisy, 4)
    assert np.allclose(t.sum(axis=1), [1, 0, 1, 0])
    assert np.allclose(t[0], [0.25, 0.5, 0.25, 0])
    assert np.allclose(t[2], [0.5, 0, 0.5, 0])


def test_empty_class_has_zero_row_and_rate() -> None:
    y = np.array([0, 0, 2, 2] * 50)
    noisy, m = inject_noise(y, n_classes=3, kind="symmetric_exclusive", rate=0.4, seed=0)
    assert m["per_class_realised"][1] == 0.0
    assert m["transition_matrix"][1] == [0.0, 0.0, 0.0]
    t = np.asarray(m["transition_matrix"])
    assert np.allclose(t[[0, 2]].sum(axis=1), 1.0)


# --------------------------------------------------------------------------- validation

_Y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"kind": "gaussian"}, r"unknown noise kind 'gaussian'.*symmetric_exclusive"),
        ({"rate": 1.0}, r"noise rate must be .*\[0, 1\)"),
        ({"rate": -0.1}, r"noise rate must be .*\[0, 1\)"),
        ({"n_classes": 1}, r"n_classes must be an integer >= 2"),
        ({"y_clean": np.array([0, 1, 10])}, r"labels must lie in \[0, 10\)"),
        ({"y_clean": np.array([-1, 1])}, r"labels must lie in \[0, 10\)"),
        ({"y_clean": np.array([0.0, 1.0])}, r"labels must be integers"),
        ({"y_clean": np.array([], dtype=np.int64)}, r"non-empty 1-D"),
        ({"sampling": "bernoulli"}, r"unknown sampling 'bernoulli'"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
        ({"kind": "instance"}, r"requires features"),
        ({"kind": "instance", "features": np.zeros((9, 4))}, r"features has 9 rows but there are 10"),
        ({"kind": "instance", "features": np.zeros(10)}, r"features must be a 2-D"),
        ({"kind": "instance", "features": np.full((10, 2), np.nan)}, r"NaN"),
        ({"kind": "instance", "features": np.zeros((10, 2)), "idn_norm_std": 0.0},
         r"idn_norm_std must be a positive"),
        ({"kind": "classmap"}, r"requires class_map"),
        ({"kind": "classmap", "class_map": "imagenet"}, r"unknown named class_map 'imagenet'"),
        ({"kind": "classmap", "class_map": {10: 1}}, r"class_map entry 10->1 is outside \[0, 10\)"),
        ({"kind": "classmap", "class_map": {1: -1}}, r"class_map entry 1->-1 is outside"),
        ({"kind": "classmap", "class_map": {3: 3}}, r"maps a class to itself"),
        ({"kind": "classmap", "class_map": "cifar10", "n_classes": 5, "y_clean": np.arange(5)},
         r"named class_map 'cifar10' is for 10 classes; this dataset has 5"),
    ],
)
def test_bad_inputs_raise_lnl_error(overrides: dict, pattern: str) -> None:
    args = {"y_clean": _Y, "n_classes": C, "kind": "symmetric_inclusive", "rate": 0.2, "seed": 0}
    args.update(overrides)
    y = args.pop("y_clean")
    with pytest.raises(LnlError, match=pattern):
        inject_noise(y, **args)
