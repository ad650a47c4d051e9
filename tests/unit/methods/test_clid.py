"""The CLID loss of CLID-MU (Hu et al., KDD 2025; docs/methods/clidmu.md#clid-and-the-two-hosts-in-symbols)."""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F

from components.methods.clid import clid_loss


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_signature_has_no_label_argument():
    params = inspect.signature(clid_loss).parameters
    positional = [n for n, p in params.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == ["embedding", "logits"]
    assert not {"y", "label", "labels", "target", "targets"} & set(params)


def test_invariant_to_permuting_the_batch():
    h, z = rand(12, 6, seed=1), rand(12, 4, seed=2) * 3
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    for kwargs in ({}, {"include_diagonal": False}, {"clip_negative": False}):
        torch.testing.assert_close(clid_loss(h[perm], z[perm], **kwargs), clid_loss(h, z, **kwargs), rtol=0, atol=1e-12)


def test_identical_embeddings_give_log_n_whatever_the_predictions():
    n = 10
    h = rand(1, 7, seed=4).expand(n, 7) * 2.5
    for seed in range(3):
        z = rand(n, 5, seed=seed, dtype=torch.float32) * 4
        assert abs(clid_loss(h.float(), z).item() - math.log(n)) < 1e-5


def test_detach_pattern():
    h, z = rand(8, 5, seed=5).requires_grad_(), rand(8, 3, seed=6).requires_grad_()
    # logits detached: nothing reaches h through the detached A
    assert not clid_loss(h, z.detach()).requires_grad
    # logits live: they get gradient, h still none (A detached)
    clid_loss(h, z).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert h.grad is None
    # the fully differentiable ablation does reach h
    clid_loss(h, z.detach(), detach_target=False).backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


def test_detach_norm_changes_only_the_gradient():
    h, z = rand(8, 5, seed=7), rand(8, 3, seed=8).requires_grad_()
    a, b = clid_loss(h, z), clid_loss(h, z, detach_norm=False)
    torch.testing.assert_close(a, b)
    (ga,) = torch.autograd.grad(a, z)
    (gb,) = torch.autograd.grad(b, z)
    assert not torch.allclose(ga, gb)


def hand_clid(h: torch.Tensor, z: torch.Tensor, tau: float, clip: bool, eps: float = 1e-7) -> float:
    """CLID with explicit loops over i, j."""
    n = h.shape[0]
    hn = [h[i] / h[i].norm() for i in range(n)]
    p = [z[i].softmax(0) for i in range(n)]
    p = [pi / pi.norm() for pi in p]
    total = 0.0
    for i in range(n):
        s = [float(hn[i] @ hn[j]) / tau for j in range(n)]
        s = [max(v, 0.0) if clip else v for v in s]
        lse = math.log(sum(math.exp(v) for v in s))
        w = [float(p[i] @ p[j]) for j in range(n)]
        total += sum(w[j] / sum(w) * -math.log(math.exp(s[j] - lse) + eps) for j in range(n))
    return total / n


def test_negative_clipping_opposite_pair_contributes_exp_zero():
    # n = 2, opposite embeddings: s = [[2, -2], [-2, 2]] at τ = 0.5; clipped, the off-diagonal enters as exp(0)
    h = torch.tensor([[1.0, 2.0], [-1.0, -2.0]], dtype=torch.float64)
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]], dtype=torch.float64)
    p = F.normalize(z.softmax(1), dim=1)
    w01 = float(p[0] @ p[1])
    b_self, b_other = 1 / (1 + w01), w01 / (1 + w01)  # both rows alike (w_ii = 1)

    def expected(off: float) -> float:  # off = exp(s_01) as it enters the softmax
        a_self, a_other = math.exp(2) / (math.exp(2) + off), off / (math.exp(2) + off)
        return b_self * -math.log(a_self + 1e-7) + b_other * -math.log(a_other + 1e-7)

    assert abs(clid_loss(h, z).item() - expected(1.0)) < 1e-12
    assert abs(clid_loss(h, z, clip_negative=False).item() - expected(math.exp(-2))) < 1e-12
    # n = 3 (opposite pair plus an orthogonal sample) against explicit loops
    h3 = torch.cat([h, torch.tensor([[2.0, -1.0]], dtype=torch.float64)])
    z3 = torch.cat([z, torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)])
    for clip in (True, False):
        assert abs(clid_loss(h3, z3, clip_negative=clip).item() - hand_clid(h3, z3, 0.5, clip)) < 1e-10


def test_lower_when_predictions_follow_embedding_clusters():
    g = torch.Generator().manual_seed(9)
    k, per, d = 4, 10, 16
    centres = torch.randn(k, d, generator=g) * 5
    cluster = torch.arange(k).repeat_interleave(per)
    h = centres[cluster] + 0.3 * torch.randn(k * per, d, generator=g)
    aligned = 6.0 * F.one_hot(cluster, k).float()
    random_logits = [torch.randn(k * per, k, generator=g) * 3 for _ in range(5)]
    base = clid_loss(h, aligned).item()
    assert all(base < clid_loss(h, zr).item() - 0.05 for zr in random_logits)


def test_value_ranges_at_n100_tau05():
    n, tau = 100, 0.5
    h = rand(n, 512, seed=10, dtype=torch.float32)
    s = F.relu(F.normalize(h, dim=1) @ F.normalize(h, dim=1).T / tau)
    lse = torch.logsumexp(s, dim=1)
    orthogonal = clid_loss(h, 30.0 * torch.eye(n))  # C = n one-hot predictions: w = I
    identical = clid_loss(h, rand(1, 10, seed=11, dtype=torch.float32).expand(n, 10))  # w = all ones
    assert abs(orthogonal.item() - (lse - 1 / tau).mean().item()) < 1e-4
    assert abs(identical.item() - (lse - s.mean(dim=1)).mean().item()) < 1e-4
    assert 2.5 < orthogonal.item() < identical.item()
    assert abs(identical.item() - 4.6) < 0.1


def test_computed_in_float32_for_low_precision_inputs():
    h, z = rand(6, 4, seed=12), rand(6, 3, seed=13)
    low = clid_loss(h.bfloat16(), z.bfloat16())
    assert low.dtype == torch.float32
    assert clid_loss(h.half(), z.half()).dtype == torch.float32
    assert clid_loss(h, z).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert clid_loss(h.float(), z.float()).dtype == torch.float32
    torch.testing.assert_close(low, clid_loss(h.bfloat16().float(), z.bfloat16().float()))


def test_include_diagonal_false_masks_both_sides():
    h, z = rand(5, 4, seed=14), rand(5, 3, seed=15)
    n = 5
    hn, p = F.normalize(h, dim=1), F.normalize(z.softmax(1), dim=1)
    s = F.relu(hn @ hn.T / 0.5).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    a = s.softmax(1)
    w = (p @ p.T) * (1 - torch.eye(n, dtype=torch.float64))
    off = ~torch.eye(n, dtype=torch.bool)
    expected = ((w / w.sum(1, keepdim=True))[off] * -torch.log(a[off] + 1e-7)).sum() / n
    torch.testing.assert_close(clid_loss(h, z, include_diagonal=False), expected)
