"""IDO's stage-two loss (Zhang et al., NeurIPS 2025; docs/methods/ido.md#the-loss-in-symbols)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from components.errors import LnlError
from components.methods.ido_loss import ido_loss

B, C = 6, 5


def batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    zw = torch.randn(B, C, generator=g) * 2
    zs = torch.randn(B, C, generator=g) * 2
    y = torch.randint(0, C, (B,), generator=g)
    tau1 = torch.rand(B, generator=g)
    eps_w = torch.rand(B, generator=g) * 1.5
    return zw, zs, y, tau1, eps_w, 1 - tau1


def per_sample_entropy(zw: torch.Tensor, zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p_bar = (zw.softmax(1).clamp(1e-4, 1 - 1e-4) + zs.softmax(1).clamp(1e-4, 1 - 1e-4)) / 2
    return -(p_bar * p_bar.log()).sum(1), p_bar


def test_pure_ce_when_tau1_one_and_other_weights_zero():
    zw, zs, y, *_ = batch()
    ones, zeros = torch.ones(B), torch.zeros(B)
    loss, stats = ido_loss(zw, zs, y, ones, zeros, zeros)
    expected = F.cross_entropy(zw, y) + F.cross_entropy(zs, y)
    torch.testing.assert_close(loss, expected)
    assert stats["ce"] == pytest.approx(expected.item(), rel=1e-6)
    assert stats["sim"] == 0.0 and stats["ent"] == 0.0


def test_sim_zero_for_identical_views():
    zw, _, y, tau1, eps_w, tau2 = batch()
    _, stats = ido_loss(zw, zw.clone(), y, tau1, eps_w, tau2)
    assert stats["sim"] == 0.0


@pytest.mark.parametrize("confidence", [False, True])
def test_swapping_views_leaves_loss_unchanged(confidence):
    zw, zs, y, tau1, eps_w, tau2 = batch(1)
    a, sa = ido_loss(zw, zs, y, tau1, eps_w, tau2, entropy_confidence_weight=confidence)
    b, sb = ido_loss(zs, zw, y, tau1, eps_w, tau2, entropy_confidence_weight=confidence)
    torch.testing.assert_close(a, b)
    assert sa == pytest.approx(sb)


def test_stats_sum_to_loss():
    loss, stats = ido_loss(*batch(2))
    assert set(stats) == {"ce", "sim", "ent"}
    assert all(type(v) is float for v in stats.values())
    assert loss.item() == pytest.approx(sum(stats.values()), rel=1e-6)


def test_hand_computed_tiny_case():
    """2 samples, 3 classes, logits chosen so every term is easy to write down by hand."""
    zw = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    zs = torch.tensor([[1.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    y = torch.tensor([0, 1])
    tau1, eps_w, tau2 = torch.tensor([1.0, 0.5]), torch.tensor([0.3, 2.0]), torch.tensor([0.0, 0.5])
    loss, stats = ido_loss(zw, zs, y, tau1, eps_w, tau2)

    e = math.e
    # sample 0: CE_w = log 3, CE_s = log(e + 2) - 1; sample 1: softmax (1/2, 1/4, 1/4), CE = log 4 per view
    ce = (1.0 * (math.log(3) + math.log(e + 2) - 1) + 0.5 * 2 * math.log(4)) / 2
    # sample 0: (1 - 0)^2 / 3; sample 1: identical views
    sim = (0.3 * (1 / 3) + 2.0 * 0.0) / 2
    # sample 1: p_bar = (1/2, 1/4, 1/4), H = 1.5 log 2 (sample 0 has tau2 = 0)
    ent = (0.0 + 0.5 * 1.5 * math.log(2)) / 2
    assert stats["ce"] == pytest.approx(ce, rel=1e-6)
    assert stats["sim"] == pytest.approx(sim, rel=1e-6)
    assert stats["ent"] == pytest.approx(ent, rel=1e-6)
    assert loss.item() == pytest.approx(ce + sim + ent, rel=1e-6)


def test_entropy_uses_clamped_probabilities():
    """A one-hot-like prediction has entropy from the 1e-4 floors, not exactly 0."""
    z = torch.tensor([[30.0, 0.0, 0.0]])
    _, stats = ido_loss(z, z.clone(), torch.tensor([0]), torch.zeros(1), torch.zeros(1), torch.ones(1))
    p = torch.tensor([1 - 1e-4, 1e-4, 1e-4], dtype=torch.float64)
    assert stats["ent"] == pytest.approx(-(p * p.log()).sum().item(), rel=1e-4)


def test_gradient_flows_to_both_views_and_not_to_weights():
    zw, zs, y, tau1, eps_w, tau2 = batch(3)
    zw.requires_grad_(True)
    zs.requires_grad_(True)
    weights = [t.clone().requires_grad_(True) for t in (tau1, eps_w, tau2)]
    loss, _ = ido_loss(zw, zs, y, *weights)
    loss.backward()
    assert zw.grad is not None and zw.grad.abs().sum() > 0
    assert zs.grad is not None and zs.grad.abs().sum() > 0
    assert all(w.grad is None for w in weights)


def test_sim_gradient_has_no_stop_gradient():
    zw = torch.zeros(1, 2, requires_grad=True)
    zs = torch.tensor([[1.0, -1.0]], requires_grad=True)
    loss, _ = ido_loss(zw, zs, torch.tensor([0]), torch.zeros(1), torch.ones(1), torch.zeros(1))
    loss.backward()
    torch.testing.assert_close(zs.grad, torch.tensor([[1.0, -1.0]]))  # d/dzs (1/2)Σ(zs - zw)^2
    torch.testing.assert_close(zw.grad, -zs.grad)


def test_entropy_confidence_weight_is_per_sample():
    zw, zs, y, tau1, eps_w, tau2 = batch(4)
    zeros = torch.zeros(B)
    _, stats = ido_loss(zw, zs, y, zeros, zeros, tau2, entropy_confidence_weight=True)
    h, p_bar = per_sample_entropy(zw, zs)
    conf = p_bar.max(1).values
    per_sample = (tau2 * conf * h).mean().item()
    broadcast_bug = (conf.unsqueeze(1) * (tau2 * h)).mean().item()  # upstream (B, 1) x (B,) -> (B, B)
    assert stats["ent"] == pytest.approx(per_sample, rel=1e-6)
    assert abs(per_sample - broadcast_bug) > 1e-3
    _, plain = ido_loss(zw, zs, y, zeros, zeros, tau2)
    assert plain["ent"] == pytest.approx((tau2 * h).mean().item(), rel=1e-6)


def test_confidence_weight_is_detached():
    zw, zs, y, _, _, tau2 = batch(5)
    zw.requires_grad_(True)
    zeros = torch.zeros(B)
    loss, _ = ido_loss(zw, zs, y, zeros, zeros, tau2, entropy_confidence_weight=True)
    (grad,) = torch.autograd.grad(loss, zw)
    zw_ref = zw.detach().clone().requires_grad_(True)
    h, p_bar = per_sample_entropy(zw_ref, zs)
    ref = (tau2 * p_bar.max(1).values.detach() * h).mean()
    (grad_ref,) = torch.autograd.grad(ref, zw_ref)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_computed_in_float32(dtype):
    zw, zs, y, tau1, eps_w, tau2 = batch(6)
    low_w, low_s = zw.to(dtype), zs.to(dtype)
    loss, _ = ido_loss(low_w, low_s, y, tau1.double(), eps_w.half(), tau2, entropy_confidence_weight=True)
    ref, _ = ido_loss(low_w.float(), low_s.float(), y, tau1, eps_w.half().float(), tau2,
                      entropy_confidence_weight=True)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref)


def test_shape_validation():
    zw, zs, y, tau1, eps_w, tau2 = batch()
    with pytest.raises(LnlError, match="equal shape"):
        ido_loss(zw, zs[:, :3], y, tau1, eps_w, tau2)
    with pytest.raises(LnlError, match="tau2"):
        ido_loss(zw, zs, y, tau1, eps_w, tau2[:3])
    with pytest.raises(LnlError, match="tau1"):
        ido_loss(zw, zs, y, tau1.unsqueeze(1), eps_w, tau2)
