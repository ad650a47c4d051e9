"""The IDO method inside the shared loop: stage-two wrong events, mixture refits, noise scores."""

from __future__ import annotations

import numpy as np
import torch

from components.config import Params
from components.methods import get_method
from components.methods.base import MethodContext
from components.models import build_model
from components.training.loop import TensorSplits, train_epochs
from components.training.setup import make_augmenter


def _context(n: int = 96, classes: int = 3) -> MethodContext:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    splits = TensorSplits(x, y, x[:12], y[:12], x[:12], y[:12], classes)
    params = Params()
    torch.manual_seed(0)
    model = build_model({"arch": "cnn", "input_shape": [1, 8, 8], "n_classes": classes, "hidden": 8, "width": 4, "dropout": 0.0})
    wrong = np.random.default_rng(0).integers(0, 6, n)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    return MethodContext(model, splits, make_augmenter(params.augment, splits, 0), params, wrong, torch.device("cpu"),
                         optimizer)


def test_stage_two_adds_at_most_two_wrong_events_per_epoch_and_refits():
    ctx = _context()
    method = get_method("ido")(ctx)
    before = method.counts.copy()
    rows = train_epochs(ctx.model, ctx.splits, epochs=1, batch_size=32, optimizer=ctx.optimizer, scheduler=None,
                        batch_loss=method.batch_loss, after_epoch=lambda e, r: method.on_epoch_end(e), seed=0, label="t")
    added = method.counts - before
    assert added.min() >= 0 and added.max() <= 2
    assert added.sum() > 0  # an untrained net disagrees with random labels
    assert method.mixture.global_mixture.hi == method.counts.max()  # refit on the grown counts
    assert {"mean_tau1", "mean_eps", "mean_tau2"} <= set(rows[0])
    scores = method.noise_scores()
    assert scores.shape == (96,) and np.all((scores >= 0) & (scores <= 1))


def test_stage_one_counts_are_not_modified_in_place():
    ctx = _context()
    original = ctx.wrong_events.copy()
    method = get_method("ido")(ctx)
    method.counts += 1
    np.testing.assert_array_equal(ctx.wrong_events, original)


def test_wrong_events_increment_rule_timing_and_refreshed_weights():
    """One optimiser step on one batch: each sample gains exactly [argmax z_weak ≠ ỹ] + [argmax z_strong ≠ ỹ], from
    train-mode logits of the views it trains on, before the step; the loss is weighted by the mixture's prediction
    on the incremented counts. Eval-mode, post-step and stale-count versions differ, so each part can fail."""
    import copy

    from components.methods.ido_loss import ido_loss
    from components.methods.mixtures import ido_weights

    ctx = _context()
    for group in ctx.optimizer.param_groups:
        group["lr"] = 5.0  # a step big enough to change predictions
    method = get_method("ido")(ctx)
    before = method.counts.copy()
    pre_step, pre_step_eval = copy.deepcopy(ctx.model), copy.deepcopy(ctx.model).eval()
    seen = {}
    for name in ("weak", "strong"):
        real = getattr(ctx.augment, name)
        setattr(ctx.augment, name, lambda x, real=real, name=name: seen.setdefault(name, real(x)))

    def batch_loss(idx):
        seen["idx"] = idx
        seen["loss"], logits = method.batch_loss(idx)
        return seen["loss"], logits

    train_epochs(ctx.model, ctx.splits, epochs=1, batch_size=96, optimizer=ctx.optimizer, scheduler=None,
                 batch_loss=batch_loss, seed=0, label="t")  # 96 samples, one batch: exactly one step
    idx = seen["idx"].numpy()
    y = ctx.splits.y_train[seen["idx"]]

    def wrong(model):
        with torch.no_grad():
            z_w, z_s = model(seen["weak"])[0], model(seen["strong"])[0]
        return ((z_w.argmax(1) != y).long() + (z_s.argmax(1) != y).long()).numpy(), z_w, z_s

    expected, z_w, z_s = wrong(pre_step)  # train mode (BN batch statistics), before the step
    added = method.counts[idx] - before[idx]
    np.testing.assert_array_equal(added, expected)
    assert not np.array_equal(wrong(pre_step_eval)[0], expected)  # eval mode would count differently
    ctx.model.train()
    assert not np.array_equal(wrong(ctx.model)[0], expected)  # so would the model after the step

    labels = y.numpy()

    def loss_with(counts):
        tau1, eps_w, tau2 = (torch.as_tensor(a, dtype=torch.float32)
                             for a in ido_weights(*method.mixture.predict(counts, labels)))
        return ido_loss(z_w, z_s, y, tau1, eps_w, tau2)[0]

    torch.testing.assert_close(seen["loss"].detach(), loss_with(method.counts[idx]))
    assert abs(loss_with(before[idx]) - seen["loss"].detach()) > 1e-4  # stale counts would weigh differently
