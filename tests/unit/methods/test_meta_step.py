"""The shared one-step look-ahead meta-gradient (docs/methods/meta_step.md)."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from components.errors import LnlError
from components.methods.clid import clid_loss
from components.methods.meta_common import Rectifier
from components.methods.meta_step import META_GRADS, SCOPES, MetaStep, virtual_param_names
from components.models.nets import MLP, SmallCNN

B, C, D_FEAT, LR = 8, 3, 6, 0.7
HOSTS = ("metalabelnet", "vnet_clid", "vri_clid")
EXACT = ("unrolled", "cheap_exact")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny float64 models: intra-op threads only add spin-wait (100× slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Host:
    """A float64 SmallCNN with BN, fixed batches, and meta-parameters phi with their inner/meta losses."""

    def __init__(self, kind: str, seed: int = 0):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed + 1)
        self.model = SmallCNN(1, 8, C, width=2).double()
        self.x = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
        self.y = torch.randint(0, C, (B,), generator=g)
        self.x_meta = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
        self.y_meta = torch.randint(0, C, (B,), generator=g)
        if kind == "metalabelnet":  # SLP soft labels on fixed features; reverse KL over B·C; clean CE meta loss
            self.features = torch.randn(B, D_FEAT, generator=g, dtype=torch.float64)
            self.net = nn.Linear(D_FEAT, C).double()
            self.inner, self.meta = self._reverse_kl, self._clean_ce
        elif kind == "vri_clid":  # VRI rectifier on (detached embedding, noisy label), fixed ε; CLID meta loss
            self.net = Rectifier(self.model.head.in_features, C, label_dim=4, widths=(8, 8, 8)).double()
            self.inner, self.meta = self._rectified_ce, self._clid
        else:  # VNet weights on per-sample CE, normalised in-batch; CLID meta loss on an unlabelled batch
            self.net = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid()).double()
            self.inner, self.meta = self._weighted_ce, self._clid
        self.phi = list(self.net.parameters())

    def _reverse_kl(self, forward):
        logits, _ = forward(self.x)
        soft = torch.softmax(self.net(self.features), dim=1)
        p = logits.softmax(1)
        return (p * (logits.log_softmax(1) - torch.log(soft + 1e-10))).sum() / (B * C)

    def _clean_ce(self, forward):
        return F.cross_entropy(forward(self.x_meta)[0], self.y_meta)

    def _weighted_ce(self, forward):
        logits, _ = forward(self.x)
        losses = F.cross_entropy(logits, self.y, reduction="none")
        v = self.net(losses.detach()[:, None]).squeeze(1)
        return (v / v.sum() * losses).sum()

    def _rectified_ce(self, forward):
        logits, embedding = forward(self.x)
        v = self.net(embedding.detach(), self.y, generator=torch.Generator().manual_seed(5))  # the same ε every call
        return F.cross_entropy(v * logits, self.y)

    def _clid(self, forward):
        logits, embedding = forward(self.x_meta)
        return clid_loss(embedding, logits)

    def lookahead(self, scope: str):
        """forward at θ̂(φ) = θ − LR·∇_θ L_in, computed independently of MetaStep (train mode, cloned buffers)."""
        names = virtual_param_names(self.model, scope)
        params = {n: p.detach() for n, p in self.model.named_parameters()}

        def forward_at(virtual):
            def forward(x):
                buffers = {n: b.clone() for n, b in self.model.named_buffers()}
                return functional_call(self.model, ({**params, **virtual}, buffers), (x,))
            return forward

        with torch.enable_grad():
            theta = [params[n].clone().requires_grad_(True) for n in names]
            grads = torch.autograd.grad(self.inner(forward_at(dict(zip(names, theta)))), theta, allow_unused=True)
        return forward_at({n: t.detach() - LR * (0 if gk is None else gk) for n, t, gk in zip(names, theta, grads)})


def clid_surrogate(embedding, logits, frozen=None, eps: float = 1e-7):
    """CLID whose stop-gradient parts (A and the row sums of w) are constants `frozen` taken at a reference point.

    Its value derivative equals the gradient of `clid_loss`, so a finite difference of it checks the meta-gradient.
    Returns (value, parts) with parts = (A, row sums) at this point.
    """
    h = F.normalize(embedding, dim=1)
    a = torch.softmax(F.relu(h @ h.T / 0.5), dim=1)
    p = F.normalize(logits.softmax(1), dim=1)
    w = p @ p.T
    a0, d0 = frozen if frozen is not None else (a, w.sum(1, keepdim=True))
    return (w / d0 * -torch.log(a0 + eps)).sum(1).mean(), (a, w.sum(1, keepdim=True))


def meta_value_fn(host: Host, kind: str, scope: str):
    """φ ↦ value whose derivative at the current φ is d L_meta(θ̂(φ)) / dφ as the method defines it."""
    if kind == "metalabelnet":
        return lambda: host.meta(host.lookahead(scope)).item()
    with torch.no_grad():
        logits, embedding = host.lookahead(scope)(host.x_meta)
        value, frozen = clid_surrogate(embedding, logits)
        torch.testing.assert_close(value, clid_loss(embedding, logits), rtol=0, atol=1e-12)
    return lambda: clid_surrogate(*host.lookahead(scope)(host.x_meta)[::-1], frozen)[0].item()


@cache
def meta_grad(kind: str, scope: str, mode: str) -> tuple[torch.Tensor, ...]:
    host = Host(kind)
    return tuple(MetaStep(host.model, host.phi, scope=scope, mode=mode).meta_gradient(host.inner, host.meta, lr=LR))


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("kind", HOSTS)
def test_unrolled_and_cheap_exact_agree_and_match_finite_differences(kind, scope):
    unrolled, cheap = flat(meta_grad(kind, scope, "unrolled")), flat(meta_grad(kind, scope, "cheap_exact"))
    assert unrolled.abs().max() > 1e-6  # non-trivial second-order signal
    assert (unrolled - cheap).abs().max() <= 1e-6
    host = Host(kind)
    value = meta_value_fn(host, kind, scope)
    offsets = [0, *torch.tensor([p.numel() for p in host.phi]).cumsum(0).tolist()]
    delta = 1e-4
    for k in cheap.abs().argsort(descending=True)[:3].tolist():  # the three largest coordinates
        i = max(j for j, start in enumerate(offsets) if start <= k)
        coordinate = host.phi[i].view(-1)[k - offsets[i]:][:1]
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                coordinate += sign * delta
            values.append(value())
            with torch.no_grad():
                coordinate -= sign * delta
        fd = (values[0] - values[1]) / (2 * delta)
        for analytic in (unrolled[k].item(), cheap[k].item()):
            assert abs(analytic - fd) <= 1e-5 * abs(fd), (k, analytic, fd)


@pytest.mark.parametrize("mode", EXACT)
@pytest.mark.parametrize("kind", HOSTS)
def test_detaching_g_gives_exactly_zero(kind, mode, monkeypatch):
    assert flat(meta_grad(kind, "full", mode)).abs().max() > 0
    first_order = MetaStep._inner_grad
    monkeypatch.setattr(MetaStep, "_inner_grad", lambda self, loss, theta: [
        g.detach() for g in first_order(self, loss, theta)])
    host = Host(kind)
    grads = MetaStep(host.model, host.phi, mode=mode).meta_gradient(host.inner, host.meta, lr=LR)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_first_order_by_hand_gives_zero():
    host = Host("metalabelnet")
    names = [n for n, _ in host.model.named_parameters()]

    def forward_at(params):
        buffers = {n: b.clone() for n, b in host.model.named_buffers()}
        return lambda x: functional_call(host.model, (dict(zip(names, params)), buffers), (x,))

    theta = [p.detach().requires_grad_(True) for p in host.model.parameters()]
    g = torch.autograd.grad(host.inner(forward_at(theta)), theta)
    meta = host.meta(forward_at([t - LR * gk.detach() for t, gk in zip(theta, g)]))
    assert all(gp is None for gp in torch.autograd.grad(meta, host.phi, allow_unused=True))


@pytest.mark.parametrize("mode", META_GRADS)
@pytest.mark.parametrize("scope", SCOPES)
def test_model_state_and_grads_untouched(scope, mode):
    host = Host("vnet_clid")
    host.model(host.x)  # give BN non-trivial running stats and num_batches_tracked = 1
    host.model.eval()
    host.model.head.train()  # mixed flags must come back as they were
    before = {k: v.clone() for k, v in host.model.state_dict().items()}
    MetaStep(host.model, host.phi, scope=scope, mode=mode).meta_gradient(host.inner, host.meta, lr=LR)
    after = host.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert all(p.grad is None for p in host.model.parameters())
    assert all(p.grad is None for p in host.phi)
    assert not host.model.training and host.model.head.training and not host.model.body.training


@pytest.mark.parametrize("kind", HOSTS)
def test_head_scope_differs_from_full(kind):
    head, full = flat(meta_grad(kind, "head", "cheap_exact")), flat(meta_grad(kind, "full", "cheap_exact"))
    assert head.abs().max() > 0 and not torch.allclose(head, full)


def test_virtual_param_names():
    cnn = SmallCNN(1, 8, 3, width=2)  # body: block, pool, block, block, avgpool, flatten
    head = ["head.weight", "head.bias"]
    assert virtual_param_names(cnn, "full") == [n for n, _ in cnn.named_parameters()]
    assert virtual_param_names(cnn, "head") == head
    assert virtual_param_names(cnn, "last_block") == ["body.3.0.weight", "body.3.1.weight", "body.3.1.bias", *head]
    mlp = MLP(10, 3, hidden=4)  # body: flatten, linear, bn, relu, dropout, linear, bn, relu
    assert virtual_param_names(mlp, "head") == head
    assert virtual_param_names(mlp, "last_block") == [
        "body.5.weight", "body.5.bias", "body.6.weight", "body.6.bias", *head]
    mlp.head.bias.requires_grad_(False)
    assert virtual_param_names(mlp, "head") == ["head.weight"]


def test_validation():
    host = Host("metalabelnet")
    with pytest.raises(LnlError, match="scope"):
        MetaStep(host.model, host.phi, scope="body")
    with pytest.raises(LnlError, match="meta_grad"):
        MetaStep(host.model, host.phi, mode="first_order")
    with pytest.raises(LnlError, match="body"):
        virtual_param_names(nn.Linear(2, 2), "head")
    assert virtual_param_names(nn.Linear(2, 2), "full") == ["weight", "bias"]


def test_step_writes_grad_and_steps_the_meta_optimiser():
    host = Host("metalabelnet")
    expected = meta_grad("metalabelnet", "full", "cheap_exact")
    before = [p.detach().clone() for p in host.phi]
    for p in host.phi:
        p.grad = torch.full_like(p, 7.0)  # stale gradient must be replaced, not accumulated
    opt = torch.optim.SGD(host.phi, lr=0.1)
    MetaStep(host.model, host.phi).step(opt, host.inner, host.meta, lr=LR)
    for p, p0, g in zip(host.phi, before, expected):
        torch.testing.assert_close(p.grad, g)
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g)


def test_meta_forwards_use_batch_statistics_even_in_eval_mode():
    host = Host("metalabelnet")
    host.model(host.x)  # running stats now differ from any batch's statistics
    host.model.eval()
    grads = MetaStep(host.model, host.phi, mode="cheap_exact").meta_gradient(host.inner, host.meta, lr=LR)
    host.model.train()
    expected = MetaStep(host.model, host.phi, mode="cheap_exact").meta_gradient(host.inner, host.meta, lr=LR)
    torch.testing.assert_close(flat(grads), flat(expected), rtol=0, atol=0)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("kind", HOSTS)
def test_directional_matches_the_exact_meta_gradient(kind, scope):
    """The forward difference along a fresh v converges to the exact gradient; the default step is close to it."""
    exact = flat(meta_grad(kind, scope, "cheap_exact"))
    host = Host(kind)
    fine = MetaStep(host.model, host.phi, scope=scope, mode="directional", eps=1e-6)
    assert (flat(fine.meta_gradient(host.inner, host.meta, lr=LR)) - exact).norm() <= 1e-4 * exact.norm()
    default = MetaStep(host.model, host.phi, scope=scope, mode="directional")
    assert (flat(default.meta_gradient(host.inner, host.meta, lr=LR)) - exact).norm() <= 5e-2 * exact.norm()


def test_directional_keeps_its_direction_until_refreshed():
    host = Host("vnet_clid")
    step = MetaStep(host.model, host.phi, mode="directional")
    direction = torch.zeros(step.direction_size(), dtype=torch.float64)
    first = flat(step.meta_gradient(host.inner, host.meta, lr=LR, direction=direction, refresh=True))
    kept = direction.clone()
    assert kept.abs().max() > 0
    host.x_meta = host.x_meta.flip(0) + 0.5  # another meta batch: v would change if it were recomputed
    torch.testing.assert_close(flat(step.meta_gradient(host.inner, host.meta, lr=LR, direction=direction,
                                                       refresh=False)), first, rtol=0, atol=0)
    assert torch.equal(direction, kept)
    step.meta_gradient(host.inner, host.meta, lr=LR, direction=direction, refresh=True)
    assert not torch.allclose(direction, kept)


def test_directional_replays_dropout_masks_in_both_forwards():
    """With dropout, both forwards of the difference must draw the same masks, or (o(θ+εv) − o(θ)) / ε is noise."""
    torch.manual_seed(0)
    model = MLP(6, C, hidden=8, dropout=0.5).double()
    net = nn.Linear(1, 1).double()
    x, y = torch.randn(B, 6, dtype=torch.float64), torch.randint(0, C, (B,))

    def inner(forward):
        losses = F.cross_entropy(forward(x)[0], y, reduction="none")
        return (torch.sigmoid(net(losses.detach()[:, None])).squeeze(1) * losses).mean()

    def meta(forward):
        return F.cross_entropy(forward(x)[0], y)

    results = []
    for eps in (1e-4, 1e-6):
        torch.manual_seed(1)
        step = MetaStep(model, list(net.parameters()), mode="directional", eps=eps)
        results.append(flat(step.meta_gradient(inner, meta, lr=LR)))
    assert results[0].abs().max() > 0
    torch.testing.assert_close(results[0], results[1], rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("kind", HOSTS)
@pytest.mark.parametrize("scope", ["full", "head"])
def test_directional_takes_the_real_forwards_outputs_in_place_of_its_own(kind, scope):
    """The caller's train-mode forward at θ gives the same gradient as the step's own forward (no dropout); with
    only the head virtual, the shifted outputs are the shifted head on that forward's embedding."""
    host = Host(kind)
    own = flat(MetaStep(host.model, host.phi, mode="directional", scope=scope).meta_gradient(host.inner, host.meta,
                                                                                             lr=LR))
    host = Host(kind)
    outputs = host.model(host.x)  # train mode: batch statistics, as the real step; its graph to θ kept
    shared = MetaStep(host.model, host.phi, mode="directional", scope=scope).meta_gradient(
        host.inner, host.meta, lr=LR, outputs=outputs)
    torch.testing.assert_close(flat(shared), own, rtol=1e-9, atol=1e-12)
    outputs[0].sum().backward()  # the caller's own backward still runs through the kept graph
    assert all(p.grad is not None for p in host.model.parameters())
