"""Synthetic label-noise generators: symmetric, pair-flip, class-map and part-dependent instance noise, each
following one convention of the literature (docs/parameters.md#noise-kinds).

Every generator draws from a local ``numpy.random.default_rng(seed)`` (never the
global RNG) and works on CPU with numpy/scipy only, so the output depends on the
seed alone. ``inject_noise`` validates its inputs, dispatches to one convention
and returns the noisy labels together with a JSON-serialisable manifest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import truncnorm

from components.config import NOISE_KINDS as CONFIG_NOISE_KINDS
from components.errors import LnlError
from components.noise.cifar100 import block_map, superclass_map

GENERATOR_VERSION = "1"
RNG_NAME = "numpy.default_rng(PCG64)"

NOISE_KINDS: tuple[str, ...] = CONFIG_NOISE_KINDS  # one list, owned by the params schema
SAMPLINGS: tuple[str, ...] = ("exact", "per_sample")
NAMED_CLASS_MAPS: dict[str, dict[int, int]] = {
    # Patrini et al.: truck->automobile, bird->airplane, deer->horse, cat<->dog.
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    # Patrini et al.: each class → the next of its group of 5, cyclically (components/noise/cifar100.py).
    "cifar100": block_map(),  # groups = index blocks [5k, 5k+5): the literature default (not the superclasses)
    "cifar100_superclass": superclass_map(),  # groups = the dataset's 20 superclasses
}
NAMED_MAP_CLASSES: dict[str, int] = {"cifar10": 10, "mnist": 10, "cifar100": 100, "cifar100_superclass": 100}
_SAMPLED_KINDS = ("pairflip", "classmap")  # kinds whose convention names the sampling


@dataclass(frozen=True)
class _Request:
    """Validated inputs shared by all generators."""

    y: np.ndarray
    n_classes: int
    rate: float
    sampling: str
    features: np.ndarray | None
    class_map: dict[int, int] | None
    idn_norm_std: float


# --------------------------------------------------------------------------- helpers


def exact_count(rate: float, n: int) -> int:
    """``floor(rate * n)``, robust to float round-off (0.29 * 100 -> 29, not 28)."""
    return int(math.floor(rate * n + 1e-9))


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, n_classes: int) -> np.ndarray:
    """Realised row-normalised C x C matrix; row i = noisy-label distribution of clean class i.

    Rows of classes absent from ``clean`` are all zero.
    """
    clean = np.asarray(clean, dtype=np.int64)
    noisy = np.asarray(noisy, dtype=np.int64)
    if clean.shape != noisy.shape:
        raise LnlError(f"clean and noisy labels differ in shape: {clean.shape} vs {noisy.shape}")
    counts = np.bincount(clean * n_classes + noisy, minlength=n_classes * n_classes)
    counts = counts.reshape(n_classes, n_classes).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _per_class_realised(clean: np.ndarray, noisy: np.ndarray, n_classes: int) -> list[float]:
    """Flip rate among samples of each clean class (0.0 for an empty class)."""
    totals = np.bincount(clean, minlength=n_classes)
    flips = np.bincount(clean[noisy != clean], minlength=n_classes)
    rates = np.divide(flips, totals, out=np.zeros(n_classes), where=totals > 0)
    return [float(v) for v in rates]


def _draw_from_matrix(y: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw each sample's label from row ``matrix[y_i]`` (one uniform per sample)."""
    u = rng.random(y.size)
    noisy = np.empty_like(y)
    cum = np.cumsum(matrix, axis=1)
    for c in range(matrix.shape[0]):
        idx = np.flatnonzero(y == c)
        drawn = np.searchsorted(cum[c], u[idx] * cum[c, -1], side="right")
        noisy[idx] = np.minimum(drawn, matrix.shape[1] - 1)
    return noisy


def _draw_from_rows(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw: one row of ``probs`` and one uniform per sample."""
    cum = np.cumsum(probs, axis=1)
    drawn = (cum <= (u * cum[:, -1])[:, None]).sum(axis=1)
    return np.minimum(drawn, probs.shape[1] - 1).astype(np.int64)


def _flip_exact(y: np.ndarray, target: Mapping[int, int], rate: float,
                rng: np.random.Generator) -> np.ndarray:
    """For each source class c (ascending), move exactly floor(rate * n_c) random samples to target[c]."""
    noisy = y.copy()
    for c in sorted(target):
        idx = np.flatnonzero(y == c)
        chosen = rng.permutation(idx)[: exact_count(rate, idx.size)]
        noisy[chosen] = target[c]
    return noisy


def _map_matrix(target: Mapping[int, int], rate: float, n_classes: int) -> np.ndarray:
    """Transition matrix with T[c, target[c]] = rate for source classes, identity elsewhere."""
    matrix = np.eye(n_classes)
    for src, dst in target.items():
        matrix[src, src] = 1.0 - rate
        matrix[src, dst] = rate
    return matrix


def _class_counts(req: _Request) -> np.ndarray:
    return np.bincount(req.y, minlength=req.n_classes)


# --------------------------------------------------------------------------- generators
# Each returns (noisy labels, expected realised rate of the convention).

_Generated = tuple[np.ndarray, float]


def _none(req: _Request, rng: np.random.Generator) -> _Generated:
    return req.y.copy(), 0.0


def _symmetric_exclusive(req: _Request, rng: np.random.Generator) -> _Generated:
    c, r = req.n_classes, req.rate
    matrix = (1.0 - r) * np.eye(c) + r / (c - 1) * (np.ones((c, c)) - np.eye(c))
    return _draw_from_matrix(req.y, matrix, rng), r


def _symmetric_inclusive(req: _Request, rng: np.random.Generator) -> _Generated:
    n, c = req.y.size, req.n_classes
    k = exact_count(req.rate, n)
    chosen = rng.choice(n, size=k, replace=False)
    noisy = req.y.copy()
    noisy[chosen] = rng.integers(0, c, size=k)  # upper bound exclusive: labels stay in [0, C)
    return noisy, k / n * (c - 1) / c


def _symmetric_inclusive_per_sample(req: _Request, rng: np.random.Generator) -> _Generated:
    c, r = req.n_classes, req.rate
    matrix = (r / c) * np.ones((c, c)) + (1.0 - r) * np.eye(c)
    return _draw_from_matrix(req.y, matrix, rng), r * (c - 1) / c


def _symmetric_exclusive_exact(req: _Request, rng: np.random.Generator) -> _Generated:
    c, y = req.n_classes, req.y
    noisy = y.copy()
    moved = 0
    for i in range(c):
        idx = rng.permutation(np.flatnonzero(y == i))
        per_target = exact_count(req.rate / (c - 1), idx.size)
        for slot, j in enumerate(t for t in range(c) if t != i):
            noisy[idx[slot * per_target:(slot + 1) * per_target]] = j
        moved += per_target * (c - 1)
    return noisy, moved / y.size


def _mapped(req: _Request, rng: np.random.Generator, target: Mapping[int, int]) -> _Generated:
    """Flip source classes of ``target`` with the requested sampling."""
    counts = _class_counts(req)
    if req.sampling == "exact":
        noisy = _flip_exact(req.y, target, req.rate, rng)
        expected = sum(exact_count(req.rate, int(counts[s])) for s in target)
    else:
        noisy = _draw_from_matrix(req.y, _map_matrix(target, req.rate, req.n_classes), rng)
        expected = req.rate * sum(int(counts[s]) for s in target)
    return noisy, expected / req.y.size


def _pairflip(req: _Request, rng: np.random.Generator) -> _Generated:
    c = req.n_classes
    return _mapped(req, rng, {i: (i + 1) % c for i in range(c)})


def _classmap(req: _Request, rng: np.random.Generator) -> _Generated:
    assert req.class_map is not None  # guaranteed by validation
    return _mapped(req, rng, req.class_map)


def _instance(req: _Request, rng: np.random.Generator) -> _Generated:
    """Instance-dependent noise (Xia et al., "Part-dependent label noise", NeurIPS 2020;
    docs/parameters.md#noise-kinds), with a local RNG.

    Draw order (fixed): q (N truncated normals), u (N uniforms), then W[c] (d x C) for c = 0..C-1.
    """
    assert req.features is not None  # guaranteed by validation
    y, c, r, std = req.y, req.n_classes, req.rate, req.idn_norm_std
    x = req.features
    q = truncnorm.rvs(a=(0.0 - r) / std, b=(1.0 - r) / std, loc=r, scale=std,
                      size=y.size, random_state=rng)
    u = rng.random(y.size)
    noisy = np.empty_like(y)
    for cls in range(c):
        w = rng.standard_normal((x.shape[1], c))  # drawn even for empty classes: stable order
        idx = np.flatnonzero(y == cls)
        if idx.size:
            probs = _instance_probs(x[idx] @ w, cls, q[idx])
            noisy[idx] = _draw_from_rows(probs, u[idx])
    return noisy, r


def _instance_probs(scores: np.ndarray, true_class: int, q: np.ndarray) -> np.ndarray:
    """p = q * softmax(s with s[y] = -inf); p[y] = 1 - q (stable softmax)."""
    scores = scores.copy()
    scores[:, true_class] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    expd = np.exp(scores)
    probs = q[:, None] * expd / expd.sum(axis=1, keepdims=True)
    probs[:, true_class] = 1.0 - q
    return probs


_GENERATORS: dict[str, Callable[[_Request, np.random.Generator], _Generated]] = {
    "none": _none,
    "symmetric_exclusive": _symmetric_exclusive,
    "symmetric_inclusive": _symmetric_inclusive,
    "symmetric_inclusive_per_sample": _symmetric_inclusive_per_sample,
    "symmetric_exclusive_exact": _symmetric_exclusive_exact,
    "pairflip": _pairflip,
    "classmap": _classmap,
    "instance": _instance,
}
assert tuple(_GENERATORS) == NOISE_KINDS


# --------------------------------------------------------------------------- validation


def _check_kind_and_options(kind: str, n_classes: int, rate: float, seed: int, sampling: str,
                            idn_norm_std: float) -> None:
    if kind not in NOISE_KINDS:
        raise LnlError(f"unknown noise kind {kind!r}; valid kinds: {', '.join(NOISE_KINDS)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise LnlError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if (isinstance(rate, bool) or not isinstance(rate, (int, float, np.number))
            or not 0.0 <= float(rate) < 1.0):
        raise LnlError(f"noise rate must be a number in [0, 1), got {rate!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LnlError(f"seed must be a non-negative integer, got {seed!r}")
    if sampling not in SAMPLINGS:
        raise LnlError(f"unknown sampling {sampling!r}; valid samplings: {', '.join(SAMPLINGS)}")
    if kind == "instance" and not (isinstance(idn_norm_std, (int, float, np.number))
                                   and math.isfinite(idn_norm_std) and idn_norm_std > 0):
        raise LnlError(f"idn_norm_std must be a positive number, got {idn_norm_std!r}")


def _check_labels(y_clean: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y_clean)
    if y.ndim != 1 or y.size == 0:
        raise LnlError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise LnlError(f"labels must be integers, got dtype {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        raise LnlError(f"labels must lie in [0, {n_classes}) for n_classes={n_classes}; "
                       f"found values in [{lo}, {hi}]")
    return y.astype(np.int64)


def _check_features(features: np.ndarray | None, n_samples: int) -> np.ndarray:
    if features is None:
        raise LnlError("kind 'instance' requires features (an N x d array)")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise LnlError(f"features must be a 2-D (N x d) array, got shape {x.shape}")
    if x.shape[0] != n_samples:
        raise LnlError(f"features has {x.shape[0]} rows but there are {n_samples} labels")
    if not np.isfinite(x).all():
        raise LnlError("features contain NaN or infinite values")
    return x


def _resolve_class_map(class_map: Mapping[int, int] | str | None, n_classes: int) -> dict[int, int]:
    if class_map is None:
        raise LnlError(f"kind 'classmap' requires class_map (a dict or one of: "
                       f"{', '.join(NAMED_CLASS_MAPS)})")
    if isinstance(class_map, str):
        if class_map not in NAMED_CLASS_MAPS:
            raise LnlError(f"unknown named class_map {class_map!r}; "
                           f"named maps: {', '.join(NAMED_CLASS_MAPS)}")
        if n_classes != NAMED_MAP_CLASSES[class_map]:
            raise LnlError(f"named class_map {class_map!r} is for {NAMED_MAP_CLASSES[class_map]} classes; "
                           f"this dataset has {n_classes}")
        class_map = NAMED_CLASS_MAPS[class_map]
    if not isinstance(class_map, Mapping) or not class_map:
        raise LnlError(f"class_map must be a non-empty dict {{source: target}}, got {class_map!r}")
    resolved: dict[int, int] = {}
    for src, dst in class_map.items():
        try:
            s, d = int(src), int(dst)
        except (TypeError, ValueError):
            raise LnlError(f"class_map entry {src!r}->{dst!r} is not a pair of integers") from None
        if not (0 <= s < n_classes and 0 <= d < n_classes):
            raise LnlError(f"class_map entry {s}->{d} is outside [0, {n_classes})")
        if s == d:
            raise LnlError(f"class_map entry {s}->{d} maps a class to itself")
        resolved[s] = d
    return resolved


# --------------------------------------------------------------------------- public API


def inject_noise(y_clean: np.ndarray, *, n_classes: int, kind: str, rate: float, seed: int,
                 features: np.ndarray | None = None,
                 class_map: dict[int, int] | str | None = None,
                 sampling: str = "exact", idn_norm_std: float = 0.1) -> tuple[np.ndarray, dict]:
    """Return ``(noisy int64 labels, manifest)`` for one named noise convention.

    ``kind`` is one of ``NOISE_KINDS``; ``sampling`` ("exact" | "per_sample") applies to
    ``pairflip`` and ``classmap``; ``features`` (N x d, already scaled) is required for
    ``instance``; ``class_map`` (dict or a name in ``NAMED_CLASS_MAPS``) for ``classmap``.
    A rate of 0 returns the clean labels unchanged for every kind. Raises ``LnlError``.
    """
    _check_kind_and_options(kind, n_classes, rate, seed, sampling, idn_norm_std)
    n_classes, rate, seed = int(n_classes), float(rate), int(seed)
    y = _check_labels(y_clean, n_classes)
    req = _Request(
        y=y, n_classes=n_classes, rate=rate, sampling=sampling,
        features=_check_features(features, y.size) if kind == "instance" else None,
        class_map=_resolve_class_map(class_map, n_classes) if kind == "classmap" else None,
        idn_norm_std=float(idn_norm_std),
    )
    if rate == 0.0:
        noisy, expected = y.copy(), 0.0
    else:
        noisy, expected = _GENERATORS[kind](req, np.random.default_rng(seed))
    return noisy.astype(np.int64), _manifest(req, kind, seed, noisy, expected)


def _manifest(req: _Request, kind: str, seed: int, noisy: np.ndarray, expected: float) -> dict:
    """JSON-serialisable record of the convention and the requested/realised rates."""
    y, c = req.y, req.n_classes
    manifest: dict = {
        "kind": kind,
        "convention": f"{kind}/{req.sampling}" if kind in _SAMPLED_KINDS else kind,
        "requested_rate": req.rate,
        "realised_rate": float(np.mean(noisy != y)),
        "expected_rate": float(expected),
        "per_class_realised": _per_class_realised(y, noisy, c),
        "transition_matrix": transition_matrix(y, noisy, c).tolist(),
        "seed": seed,
        "rng": RNG_NAME,
        "generator_version": GENERATOR_VERSION,
        "n_samples": int(y.size),
        "n_classes": c,
    }
    if req.class_map is not None:
        manifest["class_map"] = {str(k): int(v) for k, v in sorted(req.class_map.items())}
    if req.features is not None:
        manifest["idn_norm_std"] = req.idn_norm_std
        manifest["n_features"] = int(req.features.shape[1])
    return manifest
