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
