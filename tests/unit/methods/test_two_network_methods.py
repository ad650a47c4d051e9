"""Co-teaching and DivideMix: selection, schedules, co-divide, and both methods through the shared loop."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from components.evaluation.metrics import roc_auc
from components.methods import get_method
from components.methods.coteaching import forget_schedule
from components.methods.dividemix import CycledSubset, lambda_u_preset, sharpen
from components.methods.mixtures import gaussian_clean_probability
from components.methods.two_networks import small_loss_selection
from components.training.loop import TensorSplits, accuracy, train_epochs
from tests.unit.methods.test_meta_methods import blobs, context

QUIET = {"noise_std": 0.0, "strong_noise_std": 0.0}  # feature data: weak view = the input itself


def fit(ctx, name: str, epochs: int):
    method = get_method(name)(ctx)
    with contextlib.redirect_stdout(io.StringIO()):
        rows = train_epochs(method.eval_model, ctx.splits, epochs=epochs, batch_size=64, optimizer=ctx.optimizer,
                            scheduler=None, batch_loss=method.batch_loss,
                            after_epoch=lambda e, r: method.on_epoch_end(e), seed=0, label=name)
    return method, rows


def noisy_mask(seed: int = 0, n: int = 600, rate: float = 0.6) -> np.ndarray:
    """Which training labels `blobs` flipped (recomputed from its RNG stream)."""
    rng = np.random.default_rng(seed)
    rng.normal(size=(4, 10))
    y = rng.integers(0, 4, n + 500)[:n]
    return blobs(seed, n, rate).y_train.numpy() != y


# ---------------------------------------------------------------- co-teaching


def test_small_loss_selection_keeps_the_smallest_fraction():
    losses = torch.tensor([0.9, 0.1, 0.5, 0.3, 2.0, 0.2, 0.7, 1.5, 0.05, 0.6])
    chosen = small_loss_selection(losses, 0.6)
    assert len(chosen) == 6
    assert set(chosen.tolist()) == set(torch.argsort(losses)[:6].tolist())
    assert losses[chosen].max() < losses[[i for i in range(10) if i not in chosen.tolist()]].min()
    assert len(small_loss_selection(losses, 0.01)) == 1  # never an empty selection
    with pytest.raises(Exception, match="keep_fraction"):
        small_loss_selection(losses, 0.0)


def official_rates(tau: float, n_epoch: int, num_gradual: int, exponent: float) -> list[float]:
    """The rates bhanML/Co-teaching's main.py trains with: epoch 0 only evaluates, epoch e = 1.. uses rate_schedule[e]."""
    rate_schedule = np.ones(n_epoch) * tau
    rate_schedule[:num_gradual] = np.linspace(0, tau**exponent, num_gradual)
    return [rate_schedule[epoch] for epoch in range(1, n_epoch)]


def test_forget_rate_follows_the_official_loop():
    # T_k = 10, τ = 0.2: the first trained epoch already forgets 0.2/9; the full rate is reached at epoch 9
    rates = forget_schedule(0.2, 12, num_gradual=10, exponent=1.0)
    np.testing.assert_allclose(rates[:4], [0.2 / 9, 0.4 / 9, 0.6 / 9, 0.8 / 9])
    np.testing.assert_allclose(rates[8:], 0.2)
    np.testing.assert_allclose(rates, official_rates(0.2, 13, 10, 1.0))
    np.testing.assert_allclose(forget_schedule(0.5, 4, num_gradual=3, exponent=2.0), [0.125, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(forget_schedule(0.5, 4, num_gradual=3, exponent=2.0), official_rates(0.5, 5, 3, 2.0))
    np.testing.assert_allclose(forget_schedule(0.4, 3, num_gradual=10, exponent=1.0), np.linspace(0, 0.4, 10)[1:4])
    np.testing.assert_allclose(forget_schedule(0.4, 2, num_gradual=1, exponent=1.0), [0.4, 0.4])  # no ramp


def test_each_coteaching_network_learns_from_its_peers_selection():
    ctx = context(blobs(n=200), {"method": "coteaching", "coteaching": {"forget_rate": 0.5, "num_gradual": 1}},
                  augment=QUIET)
    ctx = dataclasses.replace(ctx, init="scratch")  # the default start: the peer gets its own initialisation
    method = get_method("coteaching")(ctx)
    assert method.forget_rate == 0.5  # a one-epoch ramp is the official epoch 0 (evaluation only): τ from epoch 1
    idx = torch.arange(40)
    x, y = ctx.splits.x_train[idx], ctx.splits.y_train[idx]
    loss, _ = method.batch_loss(idx)
    nets = (method.model, method.peer)
    per_sample = [F.cross_entropy(net(x)[0], y, reduction="none") for net in nets]
    chosen = [set(torch.argsort(l.detach())[:20].tolist()) for l in per_sample]
    expected = per_sample[0][sorted(chosen[1])].mean() + per_sample[1][sorted(chosen[0])].mean()
    torch.testing.assert_close(loss, expected)
    assert chosen[0] != chosen[1]  # two independently initialised networks disagree somewhere
    assert any(g["params"][0] is next(method.peer.parameters()) for g in ctx.optimizer.param_groups)


def test_coteaching_never_reads_clean_labels():
    """Permuting every clean label in the context (validation, test) leaves training bit-identical."""
    def trained(splits: TensorSplits):
        ctx = context(splits, {"method": "coteaching", "coteaching": {"forget_rate": 0.6, "num_gradual": 2}},
                      augment=QUIET)
        ctx = dataclasses.replace(ctx, init="scratch")
        method, _ = fit(ctx, "coteaching", 3)
        return method.noise_scores(), [p.detach().clone() for p in method.peer.parameters()]

    splits = blobs()
    scrambled = TensorSplits(splits.x_train, splits.y_train, splits.x_val, splits.y_val.flip(0), splits.x_test,
                             splits.y_test.flip(0), splits.n_classes)
    (scores_a, peer_a), (scores_b, peer_b) = trained(splits), trained(scrambled)
    np.testing.assert_array_equal(scores_a, scores_b)
    assert all(torch.equal(a, b) for a, b in zip(peer_a, peer_b))


def test_coteaching_trains_and_its_rejections_detect_the_noise():
    ctx = context(blobs(), {"method": "coteaching", "coteaching": {"forget_rate": 0.6, "num_gradual": 3}})
    ctx = dataclasses.replace(ctx, init="scratch")
    method, rows = fit(ctx, "coteaching", 8)
    assert [round(r["forget_rate"], 3) for r in rows[:3]] == [0.3, 0.6, 0.6]  # linspace(0, .6, 3)[1:], then τ
    assert accuracy(ctx.model, ctx.splits.x_test, ctx.splits.y_test) > 0.7
    scores = method.noise_scores()
    assert scores.shape == (600,) and 0 <= scores.min() and scores.max() <= 1
    assert roc_auc(noisy_mask(), scores) > 0.8


def test_coteaching_forget_rate_defaults_to_the_noise_rate_and_can_be_estimated():
    ctx = context(blobs(n=200), {"method": "coteaching"}, noise={"rate": 0.3})
    assert get_method("coteaching")(ctx).tau == 0.3
    ctx = context(blobs(n=200), {"method": "coteaching"}, noise={"kind": "none"})
    assert get_method("coteaching")(ctx).tau == 0.0
    ctx = context(blobs(n=200), {"method": "coteaching", "coteaching": {"forget_rate": "estimate"}})
    rng = np.random.default_rng(0)
    ctx.wrong_events[:] = np.where(rng.random(200) < 0.3, rng.integers(8, 12, 200), rng.integers(0, 2, 200))
    assert 0.2 < get_method("coteaching")(ctx).tau < 0.4


# ---------------------------------------------------------------- DivideMix


def test_gmm_co_divide_splits_a_bimodal_loss_distribution():
    rng = np.random.default_rng(0)
    clean, noisy = rng.normal(0.15, 0.05, 700), rng.normal(0.75, 0.1, 300)
    losses = np.concatenate([clean, noisy])
    losses = (losses - losses.min()) / (losses.max() - losses.min())
    prob = gaussian_clean_probability(losses, seed=0)
    assert np.mean(prob[:700] > 0.5) > 0.99 and np.mean(prob[700:] < 0.5) > 0.99
    np.testing.assert_array_equal(gaussian_clean_probability(np.ones(10)), np.full(10, 0.5))


def test_dividemix_networks_train_on_their_peers_division():
    ctx = context(blobs(n=300), {"method": "dividemix"})
    method = get_method("dividemix")(ctx)
    threshold = ctx.params.stage2.dividemix.p_threshold
    for k in (0, 1):
        expected = torch.nonzero(method.clean_prob[1 - k] <= threshold).flatten()
        torch.testing.assert_close(method.unlabelled[k].indices, expected)
    assert method.eval_model(ctx.splits.x_test)[0].shape == (len(ctx.splits.y_test), 4)
    arch = method.eval_arch({"arch": "mlp", "input_shape": [10], "n_classes": 4})
    assert arch["arch"] == "ensemble" and len(arch["members"]) == 2


def test_sharpen_and_lambda_u_presets():
    p = torch.tensor([[0.6, 0.4]])
    torch.testing.assert_close(sharpen(p, 0.5), torch.tensor([[0.36 / 0.52, 0.16 / 0.52]]))
    assert lambda_u_preset("symmetric_inclusive", 0.2, 10) == 0
    assert lambda_u_preset("symmetric_inclusive", 0.5, 10) == 25
    assert lambda_u_preset("symmetric_inclusive", 0.9, 10) == 50
    assert lambda_u_preset("symmetric_inclusive", 0.5, 100) == 150
    assert lambda_u_preset("pairflip", 0.4, 10) == 0
    assert lambda_u_preset("instance", 0.4, 10) == 25


def test_cycled_subset_visits_every_index_once_per_pass():
    cycle = CycledSubset(torch.arange(10, 17), torch.Generator().manual_seed(0))
    first = torch.cat([cycle.take(3), cycle.take(4)])
    assert sorted(first.tolist()) == list(range(10, 17))
    assert len(cycle.take(9)) == 9
    assert len(CycledSubset(torch.arange(0), torch.Generator()).take(5)) == 0


def test_dividemix_trains_and_its_division_detects_the_noise():
    ctx = context(blobs(), {"method": "dividemix", "dividemix": {"lambda_u": 25.0}}, base_epochs=3)
    method, rows = fit(ctx, "dividemix", 4)
    assert all(math.isfinite(r["loss"]) for r in rows) and 0 < rows[-1]["labelled_fraction"] < 1
    assert 0 <= rows[-1]["train_acc"] <= 1  # from the division's eval pass, not the mixed batches
    assert accuracy(method.eval_model, ctx.splits.x_test, ctx.splits.y_test) > 0.7
    assert roc_auc(noisy_mask(), method.noise_scores()) > 0.8


def test_methods_that_need_the_warm_up_refuse_a_scratch_start():
    from components.stages.stage2 import resolve_init

    assert resolve_init(None, get_method("gce"), "gce") == "scratch"
    assert resolve_init(None, get_method("dividemix"), "dividemix") == "base"
    assert resolve_init("base", get_method("coteaching"), "coteaching") == "base"
    for name in ("dividemix", "ido", "metalabelnet"):
        with pytest.raises(Exception, match=f"stage2.init: method '{name}' supports only base"):
            resolve_init("scratch", get_method(name), name)


class Linear2(torch.nn.Module):
    """logits = x Wᵀ (float32), embedding = x: a network whose outputs are easy to compute by hand."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight))

    def forward(self, x):
        return x @ self.weight.T, x


def test_dividemix_loss_matches_hand_computed_values():
    """Two labelled samples (clean probabilities 0.9, 0.7 from the peer's division) and two unlabelled ones, three
    classes, identity views, λ = 0.7: label refinement, co-guessing, sharpening, MixMatch, Lx, λ_u·ramp·Lu and the
    prior penalty recomputed in float64 numpy."""
    ctx = context(blobs(n=200), {"method": "dividemix", "dividemix": {"lambda_u": 25.0}}, augment=QUIET)
    method = get_method("dividemix")(ctx)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    y = np.array([2, 0])
    wa, wb = [[1.0, -0.5], [0.2, 0.3], [-0.4, 0.8]], [[0.5, 0.5], [-1.0, 0.0], [0.3, -0.2]]
    net, peer = Linear2(wa), Linear2(wb)
    method.nets = method.trainers = (net, peer)
    xs = torch.zeros(200, 2)
    xs[:4] = torch.tensor(x, dtype=torch.float32)
    ys = ctx.splits.y_train.clone()
    ys[:2] = torch.tensor(y)
    method.splits = dataclasses.replace(ctx.splits, x_train=xs, y_train=ys, n_classes=3)
    method.clean_prob = [torch.zeros(200), torch.zeros(200)]
    method.clean_prob[1][:2] = torch.tensor([0.9, 0.7])  # net 0 trains on net 1's division
    method.unlabelled[0] = CycledSubset(torch.tensor([2, 3]), method.gen)
    method.unlabelled[0]._order = torch.tensor([2, 3])  # no reshuffle: the cycle draws nothing
    method.rng = type("FixedBeta", (), {"beta": lambda self, a, b: 0.3})()  # λ = max(0.3, 0.7)
    method.epoch, method.steps = 9, 0  # ramp = 8 / 16
    perm = torch.randperm(8, generator=torch.Generator().set_state(method.gen.get_state())).numpy()
    loss = method._net_loss(0, torch.tensor([0, 1]))

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def sharpen_np(p):
        p = p ** 2  # T = 0.5
        return p / p.sum(1, keepdims=True)

    pa, pb = (lambda v: softmax(v @ np.array(wa).T)), (lambda v: softmax(v @ np.array(wb).T))
    w = np.array([[0.9], [0.7]])
    targets_x = sharpen_np(w * np.eye(3)[y] + (1 - w) * pa(x[:2]))  # both views are the input itself
    targets_u = sharpen_np((2 * pa(x[2:]) + 2 * pb(x[2:])) / 4)
    inputs = np.concatenate([x[:2], x[:2], x[2:], x[2:]])
    targets = np.concatenate([targets_x, targets_x, targets_u, targets_u])
    mixed_x, mixed_t = 0.7 * inputs + 0.3 * inputs[perm], 0.7 * targets + 0.3 * targets[perm]
    probs = softmax(mixed_x @ np.array(wa).T)
    lx = -(np.log(probs[:4]) * mixed_t[:4]).sum() / 4
    lu = ((probs[4:] - mixed_t[4:]) ** 2).sum() / (4 * 3)
    penalty = (np.full(3, 1 / 3) * np.log((1 / 3) / probs.mean(0))).sum()
    expected = lx + 25.0 * 0.5 * lu + penalty
    assert abs(loss.item() - expected) < 1e-5, (loss.item(), expected)
    assert lu > 1e-3 and penalty > 1e-4  # every term contributes


def test_dividemix_second_network_is_initialised_and_warmed_up_independently():
    """As in the official code: net 2 has its own initialisation (a named stream of stage2.seed, not the global RNG)
    and its own CE warm-up as long as net 1's, so the first two divisions differ; `copy` keeps the old start."""
    splits = blobs(n=300)
    ctx = dataclasses.replace(context(splits, {"method": "dividemix"}, base_epochs=2), warmup_epochs=2)
    torch.manual_seed(123)  # the global RNG must not matter
    method = get_method("dividemix")(ctx)
    peer = [p.detach().clone() for p in method.peer.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(peer, ctx.model.parameters()))
    assert not torch.equal(method.clean_prob[0], method.clean_prob[1])
    assert accuracy(method.peer, splits.x_train, splits.y_train) > 0.3  # warmed up on the noisy labels (chance 0.25)
    again = dataclasses.replace(context(splits, {"method": "dividemix"}, base_epochs=2), warmup_epochs=2)
    torch.manual_seed(7)
    assert all(torch.equal(a, b) for a, b in zip(peer, get_method("dividemix")(again).peer.parameters()))
    cold = dataclasses.replace(context(splits, {"method": "dividemix"}, base_epochs=2), warmup_epochs=0)
    assert not all(torch.equal(a, b) for a, b in zip(peer, get_method("dividemix")(cold).peer.parameters()))
    copied = get_method("dividemix")(context(splits, {"method": "dividemix", "dividemix": {"peer_init": "copy"}}))
    assert all(torch.equal(a, b) for a, b in zip(copied.peer.parameters(), copied.model.parameters()))
    assert torch.equal(copied.clean_prob[0], copied.clean_prob[1])  # the deviation `independent` removes
