"""The information limit of symmetric label noise: the rate at which a noisy label is its true class no more often
than any other class, so the labels say nothing about the true class (a classifier trained on them learns chance,
or worse). Checked when params.yaml is read where the source fixes the class count C, and by the noise stage
(which knows C for every source) before it draws anything.

- symmetric_exclusive / symmetric_exclusive_exact: the label moves to one of the C-1 other classes with probability
  r, so P(true) = 1 - r and P(each other) = r/(C-1); information vanishes at r = (C-1)/C (0.5 for two classes,
  0.9 for ten) and turns adversarial above it.
- symmetric_inclusive / symmetric_inclusive_per_sample: the label is redrawn uniformly from all C classes with
  probability r, so P(true) = 1 - r + r/C > P(each other) = r/C for every r < 1 (its realised flip rate is
  r(C-1)/C): no limit below the rate's own bound of 1.

The transition matrices are those of components/noise/generators.py (Patrini et al., CVPR 2017, "Making deep neural
networks robust to label noise: a loss correction approach", §2: T = (1 - r)I + r/(C-1)(11ᵀ - I) for the exclusive
case); tests/unit/test_noise_limits.py checks the limits against the generated labels.
"""

from __future__ import annotations

EXCLUSIVE = ("symmetric_exclusive", "symmetric_exclusive_exact")
# Sources whose class count is fixed before any data is read (the rest: known to the noise stage).
FIXED_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "animal10n": 10,
                 "clothing1m": 14, "mini_webvision": 50, "food101n": 101}


def information_limit(kind: str, n_classes: int) -> float | None:
    """The smallest noise.rate that leaves `kind` noise on `n_classes` classes without information; None when
    every rate below 1 keeps some."""
    return (n_classes - 1) / n_classes if kind in EXCLUSIVE and n_classes >= 2 else None


def noise_limit_problem(kind: str, rate: float, n_classes: int) -> str | None:
    """One line on a symmetric rate at or above the information limit, else None."""
    limit = information_limit(kind, n_classes)
    if limit is None or rate < limit - 1e-12:
        return None
    return (f"noise.rate {rate:g} leaves the labels without information: with {n_classes} classes, {kind} noise keeps "
            f"the true label (1 - rate = {1 - rate:.4g}) no more often than it gives each other class "
            f"(rate/(C-1) = {rate / (n_classes - 1):.4g}); use a rate below (C-1)/C = {limit:.4g}")


def params_noise_problem(params) -> str | None:
    """The same check on validated params, where the data source fixes the class count."""
    data, noise = params.data, params.noise
    n_classes = FIXED_CLASSES.get(data.source) or (len(data.classes) if data.classes else None)
    return noise_limit_problem(noise.kind, noise.rate, n_classes) if n_classes else None
