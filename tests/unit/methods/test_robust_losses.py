"""GCE, SCE and ELR: losses on hand-computed values, and each method through the shared loop."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
import torch.nn.functional as F

from components.methods import get_method
from components.methods.robust_losses import elr_penalty, gce_loss, sce_loss, truncated_gce_loss
from tests.unit.methods.test_meta_methods import blobs, context

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
LABELS = torch.tensor([0, 2])


def test_gce_tends_to_ce_as_q_goes_to_zero_and_is_mae_like_at_one():
    ce = F.cross_entropy(LOGITS.double(), LABELS, reduction="none")
    torch.testing.assert_close(gce_loss(LOGITS.double(), LABELS, q=1e-6), ce, rtol=1e-5, atol=1e-6)
    p_y = torch.softmax(LOGITS, 1)[torch.arange(2), LABELS]
    torch.testing.assert_close(gce_loss(LOGITS, LABELS, q=1.0), 1 - p_y)
    torch.testing.assert_close(gce_loss(LOGITS, LABELS, q=0.7), (1 - p_y**0.7) / 0.7)


def test_truncated_gce_prunes_to_a_constant():
    weights = torch.tensor([1.0, 0.0])
    loss = truncated_gce_loss(LOGITS, LABELS, weights, q=0.7, k=0.5)
    expected0 = gce_loss(LOGITS, LABELS, q=0.7)[0] - (1 - 0.5**0.7) / 0.7
    torch.testing.assert_close(loss, torch.stack([expected0, torch.tensor(0.0)]))


def test_sce_reverse_term_is_minus_log_floor_times_one_minus_p_y():
    p_y = torch.softmax(LOGITS, 1)[torch.arange(2), LABELS]
    rce = -math.log(1e-4) * (1 - p_y)
    only_rce = sce_loss(LOGITS, LABELS, alpha=0.0, beta=1.0, log_floor=1e-4)
    torch.testing.assert_close(only_rce, rce, rtol=1e-5, atol=1e-5)
    only_ce = sce_loss(LOGITS, LABELS, alpha=1.0, beta=0.0)
    torch.testing.assert_close(only_ce, F.cross_entropy(LOGITS, LABELS, reduction="none"))


def test_elr_target_is_a_moving_average_of_the_model_predictions():
    ctx = context(blobs(n=200), {"method": "elr", "elr": {"beta": 0.7}}, base_epochs=1)
    method = get_method("elr")(ctx)
    idx = torch.arange(8)
    method.batch_loss(idx)
    with torch.no_grad():
        probs = torch.softmax(ctx.model(ctx.augment.weak(ctx.splits.x_train[idx]))[0], 1)
    # after one update from zeros, t = 0.3 · p̂ (here the augmented view differs, so compare sums and shapes)
    torch.testing.assert_close(method.targets[idx].sum(1), torch.full((8,), 0.3), rtol=1e-4, atol=1e-4)
    assert method.targets[8:].abs().sum() == 0
    penalty = elr_penalty(probs.clamp(1e-4, 1 - 1e-4), method.targets[idx])
    assert torch.all(penalty < 0)


@pytest.mark.parametrize("name", ["gce", "sce", "elr"])
def test_each_robust_loss_trains_in_the_shared_loop(name):
    from components.training.loop import accuracy, train_epochs

    ctx = context(blobs(), {"method": name, "gce": {"prune_start": 1, "prune_every": 1}})
    method = get_method(name)(ctx)
    with contextlib.redirect_stdout(io.StringIO()):
        rows = train_epochs(ctx.model, ctx.splits, epochs=3, batch_size=64, optimizer=ctx.optimizer, scheduler=None,
                            batch_loss=method.batch_loss, after_epoch=lambda e, r: method.on_epoch_end(e), seed=0,
                            label=name)
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert accuracy(ctx.model, ctx.splits.x_test, ctx.splits.y_test) > 0.5
    if name == "gce":
        assert 0 < rows[-1]["kept_fraction"] < 1  # heavy noise: some samples pruned, not all


def test_gce_truncation_happens_at_the_defaults():
    """The reference prunes after epoch 40 of 120, then every 10: by default the same fractions of stage2.epochs,
    so the default 30 epochs prune after epochs 10, 12, …; a prune_start that never comes is refused."""
    from components.config import validate_params
    from components.errors import LnlError

    default = validate_params({}).stage2
    assert default.gce.schedule(default.epochs) == (10, 2)
    assert default.gce.schedule(120) == (40, 10)  # the paper's values
    explicit = validate_params({"stage2": {"gce": {"prune_start": 40, "prune_every": 10}, "epochs": 120}})
    assert explicit.stage2.gce.schedule(120) == (40, 10)
    ctx = context(blobs(), {"method": "gce"})  # 30 epochs, defaults
    method = get_method("gce")(ctx)
    kept = [method.on_epoch_end(epoch)["kept_fraction"] for epoch in (9, 10)]
    assert kept[0] == 1.0 and 0 < kept[1] < 1  # nothing pruned before epoch 10, then the low-p_y samples
    method.weights[:] = 1
    assert method.on_epoch_end(11)["kept_fraction"] == 1.0  # not a pruning epoch
    assert method.on_epoch_end(12)["kept_fraction"] < 1  # pruned again at epoch 12
    with pytest.raises(LnlError, match="gce.prune_start 40 is not below epochs 30: truncation would never happen"):
        validate_params({"stage2": {"method": "gce", "gce": {"prune_start": 40}}})
    validate_params({"stage2": {"method": "gce", "gce": {"prune_start": 40, "truncated": False}}})  # plain GCE: fine
