"""Beta mixture EM, scoring, edge cases and IDO weights (Zhang et al., NeurIPS 2025; docs/methods/ido.md)."""

from __future__ import annotations

import numpy as np
import pytest

from components.errors import LnlError
from components.methods.mixtures import BetaMixture, ClassWiseBetaMixture, ido_weights

# how many samples have 0..5 wrong events after IDO's stage one (ResNet-50, CIFAR-100, 40 % instance noise),
# from an artifact committed to the official IDO repository
REFERENCE_FREQ = [9963, 9469, 6097, 4579, 5578, 14314]

# a 20-iteration EM fit on that histogram, pinned as a regression fixture:
# count -> (p_clean, p_noisy, F_clean, F_noisy, eps_w, tau2)
REFERENCE_TABLE = {
    0: (1.000, 0.000, 0.001, 0.000, 1.00, 0.00),
    1: (0.945, 0.055, 0.516, 0.018, 1.42, 0.06),
    2: (0.881, 0.119, 0.719, 0.047, 1.47, 0.12),
    3: (0.768, 0.232, 0.857, 0.090, 1.36, 0.23),
    4: (0.526, 0.474, 0.951, 0.164, 0.94, 0.47),
    5: (0.000, 1.000, 1.000, 0.828, 0.00, 1.00),
}


def reference_counts() -> np.ndarray:
    return np.repeat(np.arange(6), REFERENCE_FREQ).astype(np.int32)


def table_rows(bmm: BetaMixture, counts: np.ndarray) -> np.ndarray:
    """Columns: p_clean, p_noisy, F_clean, F_noisy, eps_w, tau2."""
    pc, pn, fc, fn = bmm.predict(counts)
    _, eps_w, tau2 = ido_weights(pc, pn, fc, fn)
    return np.stack([pc, pn, fc, fn, eps_w, tau2], axis=1)


# --------------------------------------------------------------------------- EM


def synthetic_x(seed: int = 0, n: int = 20_000) -> np.ndarray:
    """60% Beta(0.5, 2) (clean) + 40% Beta(2, 0.2) (noisy), already in [0, 1]: EM should recover pi0 = 0.6."""
    rng = np.random.default_rng(seed)
    n_clean = int(0.6 * n)
    return rng.permutation(np.concatenate([rng.beta(0.5, 2.0, n_clean), rng.beta(2.0, 0.2, n - n_clean)]))


def start_at(alpha: list[float], beta: list[float], pi: list[float]) -> BetaMixture:
    bmm = BetaMixture()
    bmm.alpha, bmm.beta, bmm.pi = (np.array(v, dtype=np.float64) for v in (alpha, beta, pi))
    return bmm


def test_em_recovers_mixing_weight_on_synthetic_beta_data():
    """From the true shapes and an uninformative pi = (0.5, 0.5), EM moves pi0 to within 0.05 of 0.6."""
    bmm = start_at([0.5, 2.0], [2.0, 0.2], [0.5, 0.5]).fit_normalised(synthetic_x(), iters=50)
    assert bmm.fitted and (bmm.lo, bmm.hi) == (0.0, 1.0)
    assert abs(bmm.pi[0] - 0.6) < 0.05
    means = bmm.alpha / (bmm.alpha + bmm.beta)
    assert means[0] < 0.3 < 0.8 < means[1]


def test_true_mixture_is_a_stable_em_fixed_point():
    bmm = start_at([0.5, 2.0], [2.0, 0.2], [0.6, 0.4]).fit_normalised(synthetic_x(), iters=30)
    assert abs(bmm.pi[0] - 0.6) < 0.01
    np.testing.assert_allclose([bmm.alpha[0], bmm.beta[0], bmm.alpha[1], bmm.beta[1]], [0.5, 2.0, 2.0, 0.2], rtol=0.1)


def test_official_init_on_synthetic_data_is_biased_low():
    """Characterisation, not a target: weighted-moment EM has a flat ridge here. From the official init
    (alpha = (1, 2), beta = (2, 1), pi = (0.5, 0.5)) the noisy alpha is clamped in the first steps and pi0 settles
    near 0.54 after 20 iterations (0.54..0.57 even after 1000), i.e. just outside ±0.05 of the true 0.6.
    Identity of the components is still right."""
    bmm = BetaMixture().fit_normalised(synthetic_x(), iters=20)
    assert 0.52 < bmm.pi[0] < 0.56
    means = bmm.alpha / (bmm.alpha + bmm.beta)
    assert means[0] < 0.3 < 0.8 < means[1]


@pytest.mark.parametrize("sort_components", [True, False])
def test_reference_histogram_reproduces_the_pinned_table(sort_components):
    counts = reference_counts()
    bmm = BetaMixture(sort_components=sort_components).fit(counts, iters=20)
    assert (bmm.lo, bmm.hi) == (0.0, 5.0)
    np.testing.assert_array_equal(np.round(bmm.pi, 2), [0.61, 0.39])
    np.testing.assert_array_equal(np.round([bmm.alpha[0], bmm.beta[0]], 2), [0.53, 1.43])
    np.testing.assert_array_equal(np.round([bmm.alpha[1], bmm.beta[1]], 2), [1.20, 0.13])
    rows = table_rows(bmm, np.arange(6))
    expected = np.array([REFERENCE_TABLE[c] for c in range(6)])
    # p_clean, p_noisy, F_clean, F_noisy: the table's 3 decimals exactly
    np.testing.assert_array_equal(np.round(rows[:, :4], 3), expected[:, :4])
    # eps_w, tau2 to 2 decimals; the table's eps_w(1) = 1.42 was computed from the rounded 3-decimal entries
    # (0.945 * 0.516 + 0.945 * 0.982 = 1.4156), the exact value is 1.4149
    np.testing.assert_allclose(rows[:, 4:], expected[:, 4:], atol=0.006)


def test_table_weight_columns_follow_from_its_probability_columns():
    table = np.array([REFERENCE_TABLE[c] for c in range(6)])
    _, eps_w, tau2 = ido_weights(*table[:, :4].T)
    np.testing.assert_array_equal(np.round(eps_w, 2), table[:, 4])
    np.testing.assert_array_equal(np.round(tau2, 2), table[:, 5])


def test_reference_fit_matches_per_sample_em():
    """EM on distinct values with multiplicities equals EM written directly over all samples."""
    from scipy import stats

    counts = reference_counts().astype(np.float64)
    eps = 1e-6
    x = np.clip(counts / 5.0, eps, 1 - eps)
    a, b, pi = np.array([1.0, 2.0]), np.array([2.0, 1.0]), np.array([0.5, 0.5])
    for _ in range(20):
        f = np.maximum(np.stack([stats.beta.pdf(x, a[k], b[k]) for k in range(2)]), eps)
        r = pi[:, None] * f
        r /= r.sum(0)
        for k in range(2):
            m = (r[k] * x).sum() / r[k].sum()
            v = max((r[k] * (x - m) ** 2).sum() / r[k].sum(), eps)
            a[k] = max(m * (m * (1 - m) / v - 1), eps)
            b[k] = max(a[k] * (1 - m) / m, eps)
        pi = r.mean(1)
        b[0] = 1.1 if b[0] < 1.02 else b[0]
        a[1] = 1.1 if a[1] < 1.02 else a[1]
    bmm = BetaMixture().fit(counts, iters=20)
    np.testing.assert_allclose(bmm.alpha, a, rtol=1e-9)
    np.testing.assert_allclose(bmm.beta, b, rtol=1e-9)
    np.testing.assert_allclose(bmm.pi, pi, rtol=1e-9)


def test_fit_warm_starts_from_current_parameters():
    counts = reference_counts()
    twice = BetaMixture().fit(counts, iters=10).fit(counts, iters=10)
    once = BetaMixture().fit(counts, iters=20)
    np.testing.assert_allclose(twice.alpha, once.alpha)
    np.testing.assert_allclose(twice.beta, once.beta)
    np.testing.assert_allclose(twice.pi, once.pi)


def test_clamps_hold_after_every_fit():
    rng = np.random.default_rng(1)
    bmm = BetaMixture().fit(rng.integers(0, 6, 500), iters=5)
    assert bmm.beta[0] >= 1.02 and bmm.alpha[1] >= 1.02


def test_sort_components_swaps_a_drifted_clean_component():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.beta(2.0, 8.0, 3000), rng.beta(8.0, 2.0, 3000)])
    means = {}
    for sort in (True, False):
        bmm = start_at([8.0, 2.0], [2.0, 8.0], [0.5, 0.5])  # "clean" placed at high x
        bmm.sort_components = sort
        bmm.fit_normalised(x, iters=30)
        means[sort] = bmm.alpha / (bmm.alpha + bmm.beta)
    assert means[True][0] < 0.3 and means[True][1] > 0.7
    assert means[False][0] > 0.7 and means[False][1] < 0.3  # parity mode keeps the inverted identity


def test_state_dict_is_plain_floats():
    state = BetaMixture().fit(reference_counts(), iters=3).state_dict()
    assert all(type(v) is float for key in ("alpha", "beta", "pi") for v in state[key])
    assert type(state["lo"]) is float and type(state["hi"]) is float and state["fitted"] is True


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("value", [0, 3])
def test_all_equal_counts_skip_em_and_give_finite_weights(value):
    counts = np.full(100, value)
    bmm = BetaMixture().fit(counts, iters=20)
    assert not bmm.fitted
    assert (bmm.lo, bmm.hi) == (float(value), float(value))
    np.testing.assert_array_equal(bmm.alpha, [1.0, 2.0])
    np.testing.assert_array_equal(bmm.beta, [2.0, 1.0])
    scores = bmm.predict(np.array([value, value + 1, value + 2]))
    weights = ido_weights(*scores)
    assert all(np.all(np.isfinite(a)) for a in (*scores, *weights))
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5)  # init params at x = eps: plain CE


def test_counts_above_max_clip_versus_zero():
    counts = reference_counts()
    clip = BetaMixture(out_of_range="clip").fit(counts, iters=20)
    zero = BetaMixture(out_of_range="zero").fit(counts, iters=20)
    above = np.array([6, 7])
    pc, pn, fc, fn = clip.predict(above)
    np.testing.assert_allclose(pc + pn, 1.0, atol=1e-5)
    np.testing.assert_allclose(np.stack([pc, pn, fc, fn]), np.stack(clip.predict(np.array([5, 5]))))
    pc, pn, fc, fn = zero.predict(above)
    np.testing.assert_array_equal(np.stack([pc, pn, fc, fn]), [[0, 0], [0, 0], [1, 1], [1, 1]])
    tau1, eps_w, tau2 = ido_weights(pc, pn, fc, fn)
    np.testing.assert_array_equal(np.stack([tau1, eps_w, tau2]), [[0, 0], [0, 0], [1, 1]])
    # counts below the stored min are clipped in both modes
    below = BetaMixture(out_of_range="zero").fit(counts + 2, iters=20).predict(np.array([0, 1, 2]))
    np.testing.assert_allclose(np.stack(below)[:, :2], np.stack(below)[:, [2, 2]])
    # inside the fitted range both modes agree (count 5 = max is squeezed to 1 - eps in both)
    np.testing.assert_allclose(np.stack(zero.predict(np.arange(6))), np.stack(clip.predict(np.arange(6))))


def test_predict_outputs_float64():
    bmm = BetaMixture().fit(reference_counts(), iters=2)
    assert all(a.dtype == np.float64 for a in bmm.predict(np.arange(6, dtype=np.int32)))


def test_component_without_mass_keeps_previous_shape():
    bmm = BetaMixture()
    bmm.pi = np.array([1.0, 0.0])
    bmm.fit(np.array([0, 1, 2, 3]), iters=1)
    np.testing.assert_array_equal([bmm.alpha[1], bmm.beta[1]], [2.0, 1.0])
    assert bmm.pi[1] == 0.0 and np.all(np.isfinite(bmm.alpha))


def test_validation_errors():
    with pytest.raises(LnlError, match="out_of_range"):
        BetaMixture(out_of_range="wrap")
    with pytest.raises(LnlError, match="non-negative"):
        BetaMixture().fit(np.array([0, -1, 2]), iters=1)
    with pytest.raises(LnlError, match="before fit"):
        BetaMixture().predict(np.array([1]))
    with pytest.raises(LnlError, match="bmm_scope"):
        ClassWiseBetaMixture(3, scope="batch")
    with pytest.raises(LnlError, match="degenerate_fallback"):
        ClassWiseBetaMixture(3, degenerate_fallback="nan")
    cw = ClassWiseBetaMixture(3)
    with pytest.raises(LnlError, match="length"):
        cw.fit(np.array([0, 1, 2]), np.array([0, 1]), iters=1)
    with pytest.raises(LnlError, match=r"\[0, 3\)"):
        cw.fit(np.array([0, 1, 2]), np.array([0, 1, 3]), iters=1)


# --------------------------------------------------------------------------- class-wise


def class_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four classes with different count profiles; class 2 is degenerate (all counts 4)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 4000)
    counts = rng.integers(0, 6, labels.size)
    counts[labels == 1] = np.minimum(counts[labels == 1], 2)
    counts[labels == 2] = 4
    return counts, labels


def test_classwise_degenerate_class_is_scored_by_global():
    counts, labels = class_data()
    cw = ClassWiseBetaMixture(4).fit(counts, labels, iters=2)
    np.testing.assert_array_equal(cw.degenerate, [False, False, True, False])
    probe = np.array([0, 2, 4, 5, 7])
    got = cw.predict(probe, np.full(probe.size, 2))
    want = cw.global_mixture.predict(probe)
    np.testing.assert_allclose(np.stack(got), np.stack(want))


def test_classwise_fallback_none_keeps_own_init_parameters():
    counts, labels = class_data()
    cw = ClassWiseBetaMixture(4, degenerate_fallback="none").fit(counts, labels, iters=2)
    own = cw.mixtures[2]
    np.testing.assert_array_equal(own.alpha, [1.0, 2.0])
    probe = np.array([4, 5])
    np.testing.assert_allclose(np.stack(cw.predict(probe, np.array([2, 2]))), np.stack(own.predict(probe)))


def test_classwise_predict_vectorised_matches_per_class_loop():
    counts, labels = class_data()
    cw = ClassWiseBetaMixture(4).fit(counts, labels, iters=2)
    rng = np.random.default_rng(5)
    batch_labels = rng.integers(0, 4, 257)
    batch_counts = rng.integers(0, 9, 257)  # includes counts above every fitted max
    got = np.stack(cw.predict(batch_counts, batch_labels))
    want = np.empty_like(got)
    for c in range(4):
        mask = batch_labels == c
        mixture = cw.global_mixture if cw.degenerate[c] else cw.mixtures[c]
        want[:, mask] = np.stack(mixture.predict(batch_counts[mask]))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_classwise_uses_class_lo_hi():
    counts, labels = class_data()
    cw = ClassWiseBetaMixture(4).fit(counts, labels, iters=2)
    assert (cw.mixtures[1].lo, cw.mixtures[1].hi) == (0.0, 2.0)
    assert (cw.global_mixture.lo, cw.global_mixture.hi) == (0.0, 5.0)


def test_classwise_empty_class_and_global_scope():
    counts, labels = class_data()
    labels = np.where(labels == 3, 0, labels)  # class 3 has no samples
    cw = ClassWiseBetaMixture(4).fit(counts, labels, iters=2)
    assert cw.degenerate[3]
    scores = cw.predict(np.array([1, 3]), np.array([3, 3]))
    np.testing.assert_allclose(np.stack(scores), np.stack(cw.global_mixture.predict(np.array([1, 3]))))
    glob = ClassWiseBetaMixture(4, scope="global").fit(counts, labels, iters=2)
    np.testing.assert_allclose(np.stack(glob.predict(counts[:50], labels[:50])),
                               np.stack(glob.global_mixture.predict(counts[:50])))


def test_classwise_on_reference_equals_global_when_one_class():
    counts = reference_counts()
    cw = ClassWiseBetaMixture(1).fit(counts, np.zeros(counts.size, dtype=np.int64), iters=20)
    rows = np.stack(cw.predict(np.arange(6), np.zeros(6, dtype=np.int64)), axis=1)
    expected = np.array([REFERENCE_TABLE[c][:4] for c in range(6)])
    np.testing.assert_allclose(rows, expected, atol=0.005)


# --------------------------------------------------------------------------- weights


def test_ido_weights_hand_computed():
    p_clean = np.array([1.0, 0.8, 0.5, 0.0])
    p_noisy = np.array([0.0, 0.2, 0.5, 1.0])
    F_clean = np.array([0.0, 0.5, 0.9, 1.0])
    F_noisy = np.array([0.0, 0.1, 0.2, 0.8])
    tau1, eps_w, tau2 = ido_weights(p_clean, p_noisy, F_clean, F_noisy)
    np.testing.assert_allclose(tau1, [1.0, 0.8, 0.5, 0.0])
    # 1*0 + 1*1 ; .8*.5 + .8*.9 ; .5*.9 + .5*.8 ; 0*1 + 0*.2
    np.testing.assert_allclose(eps_w, [1.0, 1.12, 0.85, 0.0])
    np.testing.assert_allclose(tau2, [0.0, 0.2, 0.5, 1.0])
