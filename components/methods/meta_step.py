"""One-step look-ahead meta-gradient shared by MetaLabelNet, CLID-MU (VRI/MW-Net hosts) and MW-Net.

θ̂(φ) = θ − lr·∇_θ L_in(θ, φ) over the *virtual* parameters (plain SGD: no momentum, no weight decay); the meta
loss is evaluated at θ̂ and differentiated w.r.t. φ: MW-Net's one-step look-ahead (Shu et al., NeurIPS 2019), which
MetaLabelNet and CLID-MU reuse with their own losses. Two exact forms of the same gradient:

- ``unrolled``: the meta forward at θ̂ sits inside the double-backward graph (reference);
- ``cheap_exact``: v = ∇_θ̂ L_meta from an ordinary backward, then grad_φ = −lr·∂/∂φ Σ_k ⟨g_k, v_k⟩ with v held
  constant (same gradient, lower memory).

and one approximation, the default (docs/methods/meta_step.md):

- ``directional``: the same −lr·∂/∂φ ⟨∇_θ L_in(θ, φ), v⟩, written as the directional derivative of L_in along v and
  taken through the classifier's outputs o on the training batch: −lr·∂/∂φ ⟨∂L_in/∂o, J_o v⟩ with
  J_o v ≈ (o(θ + εv) − o(θ)) / ε, ε = `eps` / ‖v‖: two forwards of the classifier without a graph and a backward
  through the loss and the meta-parameters' small graph alone — no second-order backward through the classifier. v = ∇_θ̂ L_meta(θ̂) (one look-ahead and one meta forward/backward) is recomputed
  every `refresh` calls and reused in between, so φ is still updated on every training batch.

Virtual and meta forwards go through ``torch.func.functional_call`` with cloned buffers in train mode, so the
real model's BatchNorm running statistics, its parameters and their ``.grad`` are never touched. They run in fp32
(autocast off) and uncompiled, even when the ordinary step uses bf16 and ``torch.compile`` (``runtime``). The model's own
in-place activations are tolerated by autograd (ReLU saves its output); new modules used inside the meta step
should use out-of-place activations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call

from components.errors import LnlError
from components.models.classifier import full_precision
from components.training.runtime import eager

SCOPES = ("full", "last_block", "head")
META_GRADS = ("unrolled", "cheap_exact", "directional")

Forward = Callable[[Tensor], tuple[Tensor, Tensor]]
LossFn = Callable[[Forward], Tensor]

_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _last_block(body: nn.Sequential) -> list[str]:
    """Child indices of `body` forming its last block.

    Walking `body` backwards, parameterised children are collected until one that is not a bare normalisation
    layer (a Linear/Conv, or a container such as a conv-BN-ReLU block) has been taken. SmallCNN → its last
    conv-BN-ReLU block; MLP → its last Linear plus the BatchNorm1d after it.
    """
    taken: list[str] = []
    for name, child in reversed(list(body.named_children())):
        if not _has_params(child):
            continue
        taken.append(name)
        if not isinstance(child, _NORM_LAYERS):
            break
    return taken


def virtual_param_names(model: nn.Module, scope: str) -> list[str]:
    """Names (in `named_parameters` order) of the trainable parameters the virtual step updates.

    'full': all of them; 'head': those of `model.head`; 'last_block': `model.head` plus the last block of
    `model.body` (see `_last_block`). Frozen parameters (requires_grad False) are never virtual.
    """
    if scope not in SCOPES:
        raise LnlError(f"meta step: unknown scope '{scope}'; choose one of {', '.join(SCOPES)}")
    if scope == "full":
        prefixes: tuple[str, ...] = ("",)
    else:
        if not (isinstance(getattr(model, "body", None), nn.Sequential) and hasattr(model, "head")):
            raise LnlError(f"meta step: scope '{scope}' needs a model with `.body` (nn.Sequential) and `.head`")
        prefixes = ("head.",)
        if scope == "last_block":
            prefixes += tuple(f"body.{i}." for i in _last_block(model.body))
    return [n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefixes)]


@contextmanager
def _train_mode(modules: list[nn.Module]) -> Iterator[None]:
    """Every module in train mode for the duration; each module's own flag restored afterwards."""
    flags = [(m, m.training) for m in modules]
    for m in modules:
        m.training = True
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _rng_state(x: Tensor) -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state(x.device) if x.is_cuda else None


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1])


def _zeros_for_none(grads: tuple[Tensor | None, ...], like: list[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


class MetaStep:
    """One-step look-ahead meta-gradient d L_meta(θ̂(φ)) / dφ for a classifier `model` and meta-parameters `phi`.

    `inner_loss(forward)` and `meta_loss(forward)` receive `forward(x) -> (logits, embedding)` bound to θ and θ̂
    respectively; `inner_loss` must depend on `phi`. Parameters outside the virtual scope enter both forwards
    detached, so no graph is built through them.
    """

    def __init__(self, model: nn.Module, phi: list[Tensor], *, scope: str = "full", mode: str = "cheap_exact",
                 clone_buffers: bool = True, structure: nn.Module | None = None, eps: float = 1e-3):
        if mode not in META_GRADS:
            raise LnlError(f"meta step: unknown meta_grad '{mode}'; choose one of {', '.join(META_GRADS)}")
        self.model = model
        self.phi = list(phi)
        self.scope = scope
        self.mode = mode
        self.clone_buffers = clone_buffers  # False = the official MetaLabelNet's shared BN buffers (parity only)
        # the module the functional forwards run through (same names as `model`'s): `model` itself, or under
        # torchrun a copy whose BatchNorm layers do not synchronise, since every rank runs the step on the whole batch
        self.structure = structure if structure is not None else model
        self.names = virtual_param_names(model, scope)
        if not self.names:
            raise LnlError(f"meta step: scope '{scope}' selects no trainable parameters")
        self.eps = eps  # directional: the step along v, relative to ‖v‖
        # walked once: the model's parameters and buffers are updated in place (optimiser steps, BatchNorm,
        # load_state_dict), never replaced, and walking the module tree on every call cost ~10 % of a step
        self._params = dict(model.named_parameters())
        self._buffers = list(model.named_buffers())
        self._modules = list(model.modules())

    def direction_size(self) -> int:
        """Elements of v (the virtual parameters), for a caller that keeps v between refreshes."""
        return sum(self._params[n].numel() for n in self.names)

    def _forward(self, virtual: dict[str, Tensor]) -> Forward:
        """A forward at `virtual` (the other parameters detached), with buffers cloned on every call."""
        fixed = {n: p.detach() for n, p in self._params.items() if n not in virtual}

        def forward(x: Tensor) -> tuple[Tensor, Tensor]:
            buffers = {n: b.clone() if self.clone_buffers else b for n, b in self._buffers}
            return functional_call(self.structure, ({**fixed, **virtual}, buffers), (x,))

        return forward

    def _inner_grad(self, loss: Tensor, theta: list[Tensor]) -> list[Tensor]:
        """g = ∇_θ L_in with create_graph (the mixed second derivative needs it); unused → zeros."""
        grads = torch.autograd.grad(loss, theta, create_graph=True, allow_unused=True)
        return _zeros_for_none(grads, theta)

    def meta_gradient(self, inner_loss: LossFn, meta_loss: LossFn, *, lr: float, direction: Tensor | None = None,
                      refresh: bool = True, outputs: tuple[Tensor, ...] | None = None) -> list[Tensor]:
        """d meta_loss(θ̂) / d phi with θ̂ = θ − lr·∇_θ inner_loss(θ) over the virtual parameters.

        `directional` mode: `direction` (flat, `direction_size()` elements) holds v; it is recomputed in place
        when `refresh`, else reused (a fresh one is computed when none is given). `outputs`: the classifier's
        outputs at θ on the inner loss's batch with their graph, from the caller's real forward (train mode, fp32,
        no dropout, one process): they stand in for the forward at θ, and their graph gives the look-ahead's
        ∇_θ L_in (kept for the caller's backward)."""
        if self.mode == "directional":
            return self._directional(inner_loss, meta_loss, lr=lr, direction=direction, refresh=refresh,
                                     outputs=outputs)
        theta = [self._params[n].detach().requires_grad_(True) for n in self.names]  # fresh leaves: θ is never touched
        device_type = theta[0].device.type
        with _train_mode(self._modules), eager(self.model), torch.autocast(device_type, enabled=False):
            g = self._inner_grad(inner_loss(self._forward(dict(zip(self.names, theta)))), theta)
            if self.mode == "unrolled":
                theta_hat = [t - lr * gk for t, gk in zip(theta, g)]
                meta = meta_loss(self._forward(dict(zip(self.names, theta_hat))))
                return _zeros_for_none(torch.autograd.grad(meta, self.phi, allow_unused=True), self.phi)
            theta_hat = [(t - lr * gk.detach()).requires_grad_(True) for t, gk in zip(theta, g)]
            meta = meta_loss(self._forward(dict(zip(self.names, theta_hat))))
            v = _zeros_for_none(torch.autograd.grad(meta, theta_hat, allow_unused=True), theta_hat)
            dot = sum((gk * vk).sum() for gk, vk in zip(g, v) if gk.requires_grad)
            if not isinstance(dot, Tensor):  # g does not depend on anything differentiable
                return [torch.zeros_like(p) for p in self.phi]
            grads = _zeros_for_none(torch.autograd.grad(dot, self.phi, allow_unused=True), self.phi)
            return [-lr * gp for gp in grads]

    def _lookahead_direction(self, inner_loss: LossFn, meta_loss: LossFn, theta: list[Tensor], lr: float,
                             outputs: tuple[Tensor, ...] | None) -> Tensor:
        """v = ∇_θ̂ meta_loss(θ̂), θ̂ = θ − lr·∇_θ inner_loss(θ) (first-order backwards only), flattened.
        `outputs` (with their graph to the model's parameters): g comes from the caller's forward (kept for its
        own backward) instead of a forward of its own."""
        if outputs is not None:
            leaves = [self._params[n] for n in self.names]
            loss = inner_loss(lambda x: outputs)
            g = _zeros_for_none(torch.autograd.grad(loss, leaves, retain_graph=True, allow_unused=True), leaves)
            g = [gk.detach() for gk in g]
        else:
            leaves = [t.clone().requires_grad_(True) for t in theta]
            g = _zeros_for_none(torch.autograd.grad(inner_loss(self._forward(dict(zip(self.names, leaves)))),
                                                    leaves, allow_unused=True), leaves)
        theta_hat = [(t - lr * gk).requires_grad_(True) for t, gk in zip(theta, g)]
        meta = meta_loss(self._forward(dict(zip(self.names, theta_hat))))
        v = _zeros_for_none(torch.autograd.grad(meta, theta_hat, allow_unused=True), theta_hat)
        return torch.cat([vk.reshape(-1) for vk in v])

    def _shifted_outputs(self, shifted: dict[str, Tensor], x: Tensor, outs: tuple[Tensor, ...], *,
                         from_real_forward: bool) -> tuple[Tensor, ...]:
        """The classifier's outputs at θ + εv. With only the head virtual and the real forward's outputs at hand
        (which come from a forward without dropout), the embedding is unchanged and the logits are the shifted
        head applied to it: the same numbers as a whole forward, at the cost of one linear layer."""
        head = getattr(self.structure, "head", None)
        if self.scope == "head" and from_real_forward and isinstance(head, nn.Linear) and len(outs) == 2:
            embedding = outs[1].detach()
            weights = {n.removeprefix("head."): t for n, t in shifted.items()}
            return full_precision(functional_call(head, weights, (embedding,))), embedding
        return self._forward(shifted)(x)

    def _directional(self, inner_loss: LossFn, meta_loss: LossFn, *, lr: float, direction: Tensor | None,
                     refresh: bool, outputs: tuple[Tensor, ...] | None) -> list[Tensor]:
        """−lr·∂/∂φ ⟨∂L_in/∂o, J_o v⟩ over the classifier's outputs o = (logits, embedding) of the training batch,
        with J_o v ≈ (o(θ + εv) − o(θ)) / ε from two forwards without a graph (the same dropout masks in both)."""
        theta = [self._params[n].detach() for n in self.names]
        with _train_mode(self._modules), eager(self.model), torch.autocast(theta[0].device.type, enabled=False):
            if direction is None or refresh:
                v = self._lookahead_direction(inner_loss, meta_loss, theta, lr, outputs)
                direction = v if direction is None else direction.copy_(v)
            norm = float(direction.norm())
            if norm == 0.0:
                return [torch.zeros_like(p) for p in self.phi]
            eps = self.eps / norm
            seen: dict = {}

            def at_theta(x: Tensor) -> tuple[Tensor, ...]:
                if seen:
                    raise LnlError("meta step: the directional meta-gradient needs an inner loss with one forward")
                seen.update(x=x, rng=_rng_state(x))
                if outputs is not None:
                    outs = tuple(o.detach() for o in outputs)
                else:
                    with torch.no_grad():
                        outs = self._forward(dict(zip(self.names, theta)))(x)
                seen["outs"] = tuple(o.detach().requires_grad_(True) for o in outs)
                return seen["outs"]

            loss = inner_loss(at_theta)
            after = _rng_state(seen["x"])
            _set_rng_state(seen["rng"])  # the shifted forward draws what the first one drew
            shifted, offset = [], 0
            for t in theta:
                shifted.append(t + eps * direction[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
            with torch.no_grad():
                moved = self._shifted_outputs(dict(zip(self.names, shifted)), seen["x"], seen["outs"],
                                              from_real_forward=outputs is not None)
            _set_rng_state(after)
            grads_o = torch.autograd.grad(loss, seen["outs"], create_graph=True, allow_unused=True)
            terms = [(g * (m - o.detach())).sum() for g, m, o in zip(grads_o, moved, seen["outs"])
                     if g is not None and g.requires_grad]
            if not terms:  # the inner loss's output gradient does not depend on φ
                return [torch.zeros_like(p) for p in self.phi]
            grads = _zeros_for_none(torch.autograd.grad(sum(terms), self.phi, allow_unused=True), self.phi)
            return [(-lr / eps) * gp for gp in grads]

    def step(self, optimizer: torch.optim.Optimizer, inner_loss: LossFn, meta_loss: LossFn, *, lr: float,
             average: Callable[[Tensor], Tensor] | None = None, **directional) -> None:
        """Write the meta-gradient into phi's `.grad` and step the meta-optimiser (zeroing first). `average`
        (torchrun) makes every rank's replicated meta-gradient the mean over ranks, so phi stays identical."""
        grads = self.meta_gradient(inner_loss, meta_loss, lr=lr, **directional)
        optimizer.zero_grad(set_to_none=True)
        for p, gp in zip(self.phi, grads):
            p.grad = gp.detach() if average is None else average(gp.detach())
        optimizer.step()
