"""Two-component Beta mixtures over wrong-event counts, and the IDO per-sample weights (Zhang et al., NeurIPS 2025);
at the end, the two-Gaussian loss mixture of DivideMix's division.

Component 0 is *clean* (few wrong events), component 1 is *noisy*. EM is the weighted method of moments of
Arazo et al. (2019), run in float64 on the distinct normalised values with their multiplicities (identical to
running it on every sample, and much cheaper for integer counts). numpy/scipy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from components.errors import LnlError

Scores = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

INIT_ALPHA = (1.0, 2.0)
INIT_BETA = (2.0, 1.0)
INIT_PI = (0.5, 0.5)
CLAMP_BELOW = 1.02  # clean beta / noisy alpha below this are reset to CLAMP_TO
CLAMP_TO = 1.1
MIN_MASS = 1e-12  # a component whose responsibilities sum below MIN_MASS * n keeps its shape parameters

OUT_OF_RANGE = ("clip", "zero")
SCOPES = ("class", "global")
FALLBACKS = ("global", "none")


# --------------------------------------------------------------------------- validation helpers


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LnlError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")


def _as_counts(counts: np.ndarray, what: str = "counts") -> np.ndarray:
    """Return `counts` as a 1-D float64 array, rejecting negative or non-finite values."""
    w = np.asarray(counts, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(w)):
        raise LnlError(f"{what} must be finite")
    if w.size and w.min() < 0:
        raise LnlError(f"{what} must be non-negative (got minimum {w.min():g})")
    return w


def _as_labels(labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Return `labels` as a 1-D int64 array of length n with values in [0, n_classes)."""
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != n:
        raise LnlError(f"counts and labels differ in length ({n} vs {y.shape[0]})")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise LnlError(f"labels must be integers (got dtype {y.dtype})")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise LnlError(f"labels must lie in [0, {n_classes}) (got {y.min()}..{y.max()})")
    return y


# --------------------------------------------------------------------------- Beta density maths


def _beta_pdf(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta density, 0 outside (0, 1); parameters broadcast against x."""
    inside = (x > 0.0) & (x < 1.0)
    xs = np.where(inside, x, 0.5)
    log_pdf = (a - 1.0) * np.log(xs) + (b - 1.0) * np.log1p(-xs) - special.betaln(a, b)
    return np.where(inside, np.exp(log_pdf), 0.0)


def _beta_cdf(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta CDF: 0 below the support, 1 above it."""
    return special.betainc(a, b, np.clip(x, 0.0, 1.0))


def _to_support(x: np.ndarray, eps: float, out_of_range: str) -> np.ndarray:
    """Squeeze x into [eps, 1 - eps] for scoring; under 'zero' (parity) x > 1 stays off the support."""
    squeezed = np.clip(x, eps, 1.0 - eps)
    if out_of_range == "clip":
        return squeezed
    return np.where(x <= 1.0, squeezed, x)


def _score(x: np.ndarray, alpha: np.ndarray, beta: np.ndarray, pi: np.ndarray, eps: float) -> Scores:
    """Posteriors (unfloored densities) and CDFs; alpha/beta/pi have shape (2,) or (n, 2)."""
    a0, a1 = alpha[..., 0], alpha[..., 1]
    b0, b1 = beta[..., 0], beta[..., 1]
    joint0 = pi[..., 0] * _beta_pdf(x, a0, b0)
    joint1 = pi[..., 1] * _beta_pdf(x, a1, b1)
    denom = joint0 + joint1 + eps
    return joint0 / denom, joint1 / denom, _beta_cdf(x, a0, b0), _beta_cdf(x, a1, b1)


def ido_weights(p_clean: np.ndarray, p_noisy: np.ndarray, F_clean: np.ndarray,
                F_noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IDO loss weights (§5.1): tau1 = p_clean, eps_w = p_clean F_clean + (1 - p_noisy)(1 - F_noisy),
    tau2 = 1 - p_clean."""
    p_clean, p_noisy = np.asarray(p_clean, np.float64), np.asarray(p_noisy, np.float64)
    F_clean, F_noisy = np.asarray(F_clean, np.float64), np.asarray(F_noisy, np.float64)
    tau1 = p_clean
    eps_w = p_clean * F_clean + (1.0 - p_noisy) * (1.0 - F_noisy)
    tau2 = 1.0 - p_clean
    return tau1, eps_w, tau2


# --------------------------------------------------------------------------- single mixture


class BetaMixture:
    """Two-component Beta mixture over min-max normalised wrong-event counts (component 0 = clean, 1 = noisy).

    `fit` normalises counts with x = (w - lo) / max(hi - lo, 1) (lo/hi = min/max of the fit set, stored for
    `predict`), squeezes x into [eps, 1 - eps] and runs `iters` EM steps warm-started from the current
    parameters. A fit set with fewer than 2 distinct values skips EM (parameters kept, lo/hi still stored).
    `fit_normalised` fits values that are already in [0, 1] (lo = 0, hi = 1).

    `fitted` is True when the most recent fit ran EM, False before any fit or after a degenerate one.
    """

    def __init__(self, *, eps: float = 1e-6, sort_components: bool = True, out_of_range: str = "clip"):
        _check_choice("out_of_range", out_of_range, OUT_OF_RANGE)
        if not 0.0 < eps < 0.5:
            raise LnlError(f"eps must lie in (0, 0.5) (got {eps!r})")
        self.eps = float(eps)
        self.sort_components = bool(sort_components)
        self.out_of_range = out_of_range
        self.alpha = np.array(INIT_ALPHA, dtype=np.float64)
        self.beta = np.array(INIT_BETA, dtype=np.float64)
        self.pi = np.array(INIT_PI, dtype=np.float64)
        self.lo: float | None = None
        self.hi: float | None = None
        self.fitted = False

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, counts: np.ndarray, *, iters: int) -> BetaMixture:
        """Store lo/hi of `counts` and run `iters` warm-started EM steps on the normalised values."""
        w = _as_counts(counts)
        if w.size:
            self.lo, self.hi = float(w.min()), float(w.max())
        elif self.lo is None:
            self.lo, self.hi = 0.0, 0.0
        return self._fit_x(self._squeeze(self._normalise(w)), iters)

    def fit_normalised(self, x: np.ndarray, *, iters: int) -> BetaMixture:
        """Fit values already in [0, 1] (stored lo = 0, hi = 1, so `predict` takes them unchanged)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(x)) or (x.size and (x.min() < 0.0 or x.max() > 1.0)):
            raise LnlError("fit_normalised expects finite values in [0, 1]")
        self.lo, self.hi = 0.0, 1.0
        return self._fit_x(self._squeeze(x), iters)

    def _fit_x(self, x: np.ndarray, iters: int) -> BetaMixture:
        if int(iters) != iters or iters < 0:
            raise LnlError(f"iters must be a non-negative integer (got {iters!r})")
        values, mult = np.unique(x, return_counts=True)
        self.fitted = values.size >= 2
        if self.fitted:
            mult = mult.astype(np.float64)
            for _ in range(int(iters)):
                self._em_step(values, mult)
        return self

    def _em_step(self, x: np.ndarray, mult: np.ndarray) -> None:
        """One E-step + weighted method-of-moments M-step, then optional sort and the shape clamps."""
        resp = self._responsibilities(x)  # (n_values, 2)
        mass = mult @ resp  # effective samples per component
        n = mult.sum()
        alpha, beta = self.alpha.copy(), self.beta.copy()
        for k in range(2):
            if mass[k] > MIN_MASS * n:
                alpha[k], beta[k] = self._moments(x, mult * resp[:, k], mass[k])
        self.alpha, self.beta, self.pi = alpha, beta, mass / n
        mean = self._means()
        if self.sort_components and mean[0] > mean[1]:
            self.alpha, self.beta, self.pi = self.alpha[::-1].copy(), self.beta[::-1].copy(), self.pi[::-1].copy()
        self._clamp()

    def _responsibilities(self, x: np.ndarray) -> np.ndarray:
        dens = np.maximum(_beta_pdf(x[:, None], self.alpha, self.beta), self.eps)
        joint = self.pi * dens
        return joint / joint.sum(axis=1, keepdims=True)

    def _moments(self, x: np.ndarray, weight: np.ndarray, mass: float) -> tuple[float, float]:
        """Weighted method-of-moments Beta parameters with the eps floors of §4.3."""
        eps = self.eps
        m = float(weight @ x) / mass
        v = max(float(weight @ (x - m) ** 2) / mass, eps)
        a = max(m * (m * (1.0 - m) / v - 1.0), eps)
        b = max(a * (1.0 - m) / m, eps)
        return a, b

    def _means(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def _clamp(self) -> None:
        if self.beta[0] < CLAMP_BELOW:
            self.beta[0] = CLAMP_TO
        if self.alpha[1] < CLAMP_BELOW:
            self.alpha[1] = CLAMP_TO

    # -- scoring -------------------------------------------------------------------------------

    def _normalise(self, w: np.ndarray) -> np.ndarray:
        """Min-max normalise with the stored lo/hi (denominator at least 1: counts are integers)."""
        if self.lo is None or self.hi is None:
            raise LnlError("BetaMixture.predict called before fit")
        return (w - self.lo) / max(self.hi - self.lo, 1.0)

    def _squeeze(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.eps, 1.0 - self.eps)

    def predict(self, counts: np.ndarray) -> Scores:
        """(p_clean, p_noisy, F_clean, F_noisy) as float64 arrays, using the lo/hi of the last fit."""
        x = _to_support(self._normalise(_as_counts(counts)), self.eps, self.out_of_range)
        return _score(x, self.alpha, self.beta, self.pi, self.eps)

    # -- logging -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Parameters as plain Python floats (for logging)."""
        return {
            "alpha": [float(v) for v in self.alpha],
            "beta": [float(v) for v in self.beta],
            "pi": [float(v) for v in self.pi],
            "lo": None if self.lo is None else float(self.lo),
            "hi": None if self.hi is None else float(self.hi),
            "fitted": bool(self.fitted),
        }

    to_dict = state_dict

    def __repr__(self) -> str:
        a, b, p = self.alpha, self.beta, self.pi
        return (f"BetaMixture(pi=({p[0]:.3f}, {p[1]:.3f}), clean=Beta({a[0]:.3f}, {b[0]:.3f}), "
                f"noisy=Beta({a[1]:.3f}, {b[1]:.3f}), lo={self.lo}, hi={self.hi})")


# --------------------------------------------------------------------------- class-wise mixtures


class ClassWiseBetaMixture:
    """One BetaMixture per noisy class plus an always-fitted global one used for degenerate classes.

    scope='global' scores every sample with the global mixture. With degenerate_fallback='global', a class
    whose latest fit set had fewer than 2 distinct values (or no samples) is scored by the global mixture;
    with 'none' it keeps its own (initial or previous) parameters.
    """

    def __init__(self, n_classes: int, *, scope: str = "class", degenerate_fallback: str = "global",
                 eps: float = 1e-6, sort_components: bool = True, out_of_range: str = "clip"):
        _check_choice("bmm_scope", scope, SCOPES)
        _check_choice("degenerate_fallback", degenerate_fallback, FALLBACKS)
        if int(n_classes) != n_classes or n_classes < 1:
            raise LnlError(f"n_classes must be a positive integer (got {n_classes!r})")
        self.n_classes = int(n_classes)
        self.scope = scope
        self.degenerate_fallback = degenerate_fallback
        self.eps = float(eps)
        self.out_of_range = out_of_range
        opts = dict(eps=eps, sort_components=sort_components, out_of_range=out_of_range)
        self.global_mixture = BetaMixture(**opts)
        self.mixtures = [BetaMixture(**opts) for _ in range(self.n_classes)] if scope == "class" else []

    @property
    def degenerate(self) -> np.ndarray:
        """Per class: True when its latest fit ran no EM (fewer than 2 distinct values or no samples)."""
        return np.array([not m.fitted for m in self.mixtures], dtype=bool)

    def fit(self, counts: np.ndarray, labels: np.ndarray, *, iters: int) -> ClassWiseBetaMixture:
        """Fit the global mixture on all counts and (scope='class') each class's mixture on its samples."""
        w = _as_counts(counts)
        y = _as_labels(labels, w.shape[0], self.n_classes)
        self.global_mixture.fit(w, iters=iters)
        if self.scope == "class":
            order = np.argsort(y, kind="stable")
            bounds = np.searchsorted(y[order], np.arange(self.n_classes + 1))
            for c, mixture in enumerate(self.mixtures):
                mixture.fit(w[order[bounds[c]:bounds[c + 1]]], iters=iters)
        return self

    def _parameter_table(self) -> tuple[np.ndarray, ...]:
        """Rows 0..C-1: each class's effective mixture; row C: the global one."""
        fallback = self.degenerate_fallback == "global"
        rows = [self.global_mixture if (fallback and not m.fitted) else m for m in self.mixtures]
        rows.append(self.global_mixture)
        if any(m.lo is None for m in rows):
            raise LnlError("ClassWiseBetaMixture.predict called before fit")
        alpha = np.stack([m.alpha for m in rows])
        beta = np.stack([m.beta for m in rows])
        pi = np.stack([m.pi for m in rows])
        lo = np.array([m.lo for m in rows], dtype=np.float64)
        hi = np.array([m.hi for m in rows], dtype=np.float64)
        return alpha, beta, pi, lo, hi

    def predict(self, counts: np.ndarray, labels: np.ndarray) -> Scores:
        """Score each sample with the mixture of its noisy label (vectorised over the batch)."""
        w = _as_counts(counts)
        y = _as_labels(labels, w.shape[0], self.n_classes)
        if self.scope == "global":
            return self.global_mixture.predict(w)
        alpha, beta, pi, lo, hi = self._parameter_table()
        x = (w - lo[y]) / np.maximum(hi[y] - lo[y], 1.0)
        x = _to_support(x, self.eps, self.out_of_range)
        return _score(x, alpha[y], beta[y], pi[y], self.eps)

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python parameters of the global and per-class mixtures (for logging)."""
        return {
            "scope": self.scope,
            "degenerate_fallback": self.degenerate_fallback,
            "global": self.global_mixture.state_dict(),
            "classes": [m.state_dict() for m in self.mixtures],
        }

    to_dict = state_dict


# --------------------------------------------------------------------------- two-Gaussian mixture (DivideMix)


def gaussian_clean_probability(
    losses: np.ndarray, *, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4, seed: int = 0
) -> np.ndarray:
    """Posterior of the lower-mean component of a 2-component 1-D Gaussian mixture fitted to `losses`.

    DivideMix's co-divide (Li et al., ICLR 2020; the official `Train_cifar.py`): the caller min-max normalises
    per-sample losses; the fit is scikit-learn's EM with k-means initialisation (seeded), `max_iter` 10, `tol` 1e-2,
    `reg_covar` 5e-4.
    """
    import warnings

    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    if x.shape[0] < 2 or not np.all(np.isfinite(x)):
        raise LnlError(f"gaussian_clean_probability: need at least 2 finite losses, got {x.shape[0]}")
    if np.ptp(x) == 0:  # all losses equal: nothing separates the samples
        return np.full(x.shape[0], 0.5)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed)
    with warnings.catch_warnings():  # 10 EM iterations often stop short of tol by design (as in DivideMix)
        warnings.simplefilter("ignore")
        gmm.fit(x)
    return gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]
