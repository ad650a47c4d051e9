"""The label-health estimate (confident learning) on probabilities whose right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.evaluation.health import (bootstrap_interval, class_thresholds, confident_joint, estimate_joint,
                                          label_health, noise_rate)

CLASSES = [str(c) for c in range(4)]


def noisy_labels(per_class: int, flips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true, given): `per_class` samples of each class, flips[i, j] of those of true class i relabelled j."""
    k = len(flips)
    true = np.repeat(np.arange(k), per_class)
    given = true.copy()
    for i in range(k):
        rows = np.flatnonzero(true == i)
        start = 0
        for j in range(k):
            if j != i and flips[i, j]:
                given[rows[start:start + flips[i, j]]] = j
                start += flips[i, j]
    return true, given


def soft(true: np.ndarray, k: int, margin: float, seed: int) -> np.ndarray:
    """A model that ranks the true class first on average: logits true + margin, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(true), k))
    logits[np.arange(len(true)), true] += margin
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# true class i -> given class j, counts out of 100 per class: an asymmetric matrix (not symmetric noise)
FLIPS = np.array([[0, 30, 0, 10], [0, 0, 20, 0], [5, 5, 0, 5], [0, 0, 0, 0]])


def test_perfect_probabilities_give_back_the_transition_matrix():
    true, given = noisy_labels(100, FLIPS)
    probs = np.eye(4)[true]  # the model knows every true class
    joint = estimate_joint(probs, given)
    counts = np.zeros((4, 4))
    np.add.at(counts, (given, true), 1)
    np.testing.assert_allclose(joint, counts / len(true), atol=1e-12)  # p(given, true) exactly
    assert noise_rate(joint) == pytest.approx(FLIPS.sum() / 400)

    health = label_health(probs, given, CLASSES, resamples=50)
    assert health["estimated_noise_rate"] == pytest.approx(0.1875)
    truth_given = counts / counts.sum(1, keepdims=True)  # p(true | given)
    for c, row in enumerate(health["per_class"]):
        assert row == {"class": CLASSES[c], "n": int((given == c).sum()),
                       "estimated_noise_rate": pytest.approx(1 - truth_given[c, c])}
    # the most labels first: 30 of true 0 marked 1, 20 of 1 marked 2, 10 of 0 marked 3, then the 5s in index order
    pairs = [(1, 0), (2, 1), (3, 0), (0, 2), (1, 2)]
    assert health["top_confusions"] == [{"given": str(g), "true": str(t), "share": pytest.approx(truth_given[g, t])}
                                        for g, t in pairs]
    assert health["top_confusions"][0]["share"] == pytest.approx(30 / 115)  # given 1: 80 right, 30 + 5 wrong


def test_thresholds_are_the_mean_own_class_probability():
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(class_thresholds(probs, labels), [0.7, 0.7])
    # row 1: p0 = 0.5 < 0.7 and p1 = 0.5 < 0.7: not confidently anything; row 3: p1 0.6 < 0.7, p0 0.4 < 0.7
    np.testing.assert_array_equal(confident_joint(probs, labels), [[1, 0], [0, 1]])


def test_argmax_among_the_classes_above_threshold():
    probs = np.array([[0.2, 0.45, 0.35], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.1, 0.6]])
    labels = np.array([0, 0, 1, 2, 2])
    # thresholds: 0.55, 0.8, 0.7 -> row 0 is above none (0.45 < 0.8) ... row 4 above t2 only
    np.testing.assert_allclose(class_thresholds(probs, labels), [0.55, 0.8, 0.7])
    np.testing.assert_array_equal(confident_joint(probs, labels), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    probs[0] = [0.0, 0.3, 0.7]  # above t2 (0.7) though t0 moved: counted as (given 0, true 2)
    assert confident_joint(probs, labels)[0, 2] == 1


@pytest.mark.parametrize("flips", [np.full((4, 4), 65) * (1 - np.eye(4, dtype=int)),  # symmetric 39 %
                                   np.roll(np.eye(4, dtype=int), 1, axis=1) * 200])  # pair flip 40 %
def test_a_model_that_learned_the_clean_pattern_recovers_the_rate(flips):
    true, given = noisy_labels(500, flips)
    probs = soft(true, 4, margin=4.0, seed=0)
    actual = (given != true).mean()
    assert actual == pytest.approx(flips.sum() / 2000) and actual > 0.38
    health = label_health(probs, given, CLASSES, resamples=100)
    assert abs(health["estimated_noise_rate"] - actual) < 0.02
    low, high = health["estimated_noise_rate_interval"]
    assert low < health["estimated_noise_rate"] < high and low < actual < high


def test_a_model_that_memorised_the_labels_sees_no_noise():
    """Why the estimate reads a model that did not fit the noise: in-sample probabilities of one that did agree
    with every given label, and confident learning then finds nothing wrong."""
    true, given = noisy_labels(100, FLIPS)
    assert noise_rate(estimate_joint(np.eye(4)[given] * 0.9 + 0.025, given)) == pytest.approx(0.0, abs=1e-12)


def test_interval_narrows_with_more_rows():
    widths = []
    for per_class in (100, 1600):
        true, given = noisy_labels(per_class, np.full((4, 4), per_class // 5) * (1 - np.eye(4, dtype=int)))
        low, high = bootstrap_interval(soft(true, 4, margin=3.0, seed=1), given, resamples=200)
        widths.append(high - low)
    assert 2.5 < widths[0] / widths[1] < 6  # about sqrt(16) = 4


def test_verified_rows_count_as_right():
    true, given = noisy_labels(100, FLIPS)
    probs = np.eye(4)[true]
    extra_probs = np.eye(4)[np.zeros(40, int)]  # the model says class 0 ...
    extra_labels = np.full(40, 3)  # ... a person confirmed class 3: right, and not counted as noise
    all_probs, all_labels = np.vstack([probs, extra_probs]), np.concatenate([given, extra_labels])
    verified = np.r_[np.zeros(400, bool), np.ones(40, bool)]
    health = label_health(all_probs, all_labels, CLASSES, verified=verified, resamples=50)
    assert health["estimated_noise_rate"] == pytest.approx(FLIPS.sum() / 440)
    assert health["per_class"][3]["n"] == int((given == 3).sum()) + 40
    unverified = label_health(all_probs, all_labels, CLASSES, resamples=50)["estimated_noise_rate"]
    assert unverified > health["estimated_noise_rate"]


def test_block_schema_is_plain_json():
    true, given = noisy_labels(50, FLIPS // 2)
    health = label_health(soft(true, 4, 3.0, 2), given, CLASSES, resamples=50)
    assert json.loads(json.dumps(health)) == health
    assert set(health) == {"estimated_noise_rate", "estimated_noise_rate_interval", "per_class", "top_confusions"}
    assert all(set(r) == {"class", "n", "estimated_noise_rate"} for r in health["per_class"])
    assert all(set(t) == {"given", "true", "share"} for t in health["top_confusions"])
    assert isinstance(health["per_class"][0]["n"], int)


def test_degenerate_inputs():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    health = label_health(probs, np.array([0, 0]), ["a", "b", "c"], resamples=50)  # classes b, c: nobody
    assert health["estimated_noise_rate"] == 0.0 and health["top_confusions"] == []
    assert [r["n"] for r in health["per_class"]] == [2, 0, 0]
    empty = label_health(np.zeros((0, 3)), np.zeros(0, int), ["a", "b", "c"])
    assert empty["estimated_noise_rate"] == 0.0 and empty["estimated_noise_rate_interval"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="labels must lie in 0 .. 2"):
        label_health(probs, np.array([0, 3]), ["a", "b", "c"])
