"""What the meta-learning methods share beyond the meta step: meta-batch sampling, the cadence of meta
updates, meta-optimisers, and the two host networks (MW-Net's weighting net, VRI's rectifier)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from components.config.section import Section
from components.methods.base import MethodContext, Stage2Method
from components.methods.meta_step import MetaStep
from components.training import distributed, optim


class EndlessBatches:
    """Batches of indices into a meta set forever, reshuffled every pass (seeded); shuffle=False keeps the order."""

    def __init__(self, n: int, batch_size: int, *, seed: int, device: torch.device, shuffle: bool = True):
        self.n, self.batch_size, self.shuffle, self.device = n, min(batch_size, n), shuffle, device
        self.gen = torch.Generator().manual_seed(seed)
        self._queue: list[Tensor] = []

    def next(self) -> Tensor:
        if not self._queue:
            order = torch.randperm(self.n, generator=self.gen) if self.shuffle else torch.arange(self.n)
            self._queue = list(order.to(self.device).split(self.batch_size))
            if len(self._queue) > 1 and len(self._queue[-1]) < 2:  # never a meta batch of one (BatchNorm)
                self._queue[-2] = torch.cat(self._queue[-2:])
                self._queue.pop()
        return self._queue.pop(0)


def require_trusted_split(ctx: MethodContext, method: str) -> None:
    """Methods whose meta loss reads labels need the validation split to keep its clean labels."""
    from components.errors import LnlError

    if ctx.params.noise.val_labels != "clean":
        raise LnlError(f"stage2.method: '{method}' needs a trusted meta set with clean labels, "
                       "but noise.val_labels is 'noisy'; set noise.val_labels: clean")
    if len(ctx.splits.y_val) < 2:
        raise LnlError(f"stage2.method: '{method}' needs at least 2 trusted validation samples")


def make_meta_optimizer(kind: str, params: list[Tensor], *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam or plain SGD (no momentum) for the meta-parameters."""
    if kind == "adam":
        return optim.adam(params, lr=lr, weight_decay=weight_decay)
    return optim.sgd(params, lr=lr, weight_decay=weight_decay)


class MetaParams(Section):
    """The meta-learning methods' shared one-step look-ahead settings, params.yaml stage2.meta
    (docs/methods/meta_step.md)."""

    interval: int | None = Field(None, ge=1, description="a meta update every k steps; null = the method's default")
    scope: Literal["full", "last_block", "head"] | None = Field(
        None, description="parameters the virtual step updates; null = the method's default"
    )
    grad: Literal["directional", "cheap_exact", "unrolled"] = Field(
        "directional", description="directional = the look-ahead meta-gradient by a forward difference along a "
        "meta direction refreshed every `refresh` steps (docs/methods/meta_step.md); cheap_exact and unrolled are "
        "two exact forms of one gradient")
    refresh: int | None = Field(None, ge=1, description="directional: recompute the meta direction every k meta "
                                "updates; null = the method's default")
    eps: float = Field(1e-3, gt=0, description="directional: the difference step along the meta direction / its norm")
    inner_lr: float | None = Field(None, gt=0, description="virtual SGD step size; default: the current LR")
    meta_batch_size: int | None = Field(None, ge=2, description="images per meta batch; null = the method's default "
                                        "(MetaLabelNet: the training batch size, as its official meta loader; else 100)")


class MetaMethod(Stage2Method):
    """A stage-two method with meta-parameters φ updated by a one-step look-ahead every `interval` steps.

    `stage2.meta.*` keys left null take the method's defaults (`DEFAULT_SCOPE`, `DEFAULT_REFRESH`,
    `default_interval()`, `meta_batch_size()`): the cheapest setting measured to stay within a point of the exact
    full-network, every-step one (docs/methods/meta_step.md).
    """

    SHARED_SECTION = "meta"  # params.yaml stage2.meta: read by every meta-learning method
    SHARED_PARAMS = MetaParams

    DEFAULT_SCOPE = "full"
    DEFAULT_INTERVAL = 1
    DEFAULT_META_BATCH = 100  # images per meta batch when stage2.meta.meta_batch_size is null
    DEFAULT_REFRESH = 8  # directional: meta updates between two meta directions (docs/methods/meta_step.md)
    STATE_SKIP = Stage2Method.STATE_SKIP + ("meta_step",)  # references to the model and φ only

    def __init__(self, ctx: MethodContext, phi: list[Tensor], meta_optimizer: torch.optim.Optimizer,
                 *, clone_buffers: bool = True):
        super().__init__(ctx)
        self.net = distributed.unwrap(self.model)  # the classifier (`model` is its DDP wrapper under torchrun)
        self.meta_cfg = ctx.params.stage2.meta
        self.scope = self.meta_cfg.scope or self.DEFAULT_SCOPE
        self.interval = self.meta_cfg.interval or self.default_interval()
        self.meta_optimizer = meta_optimizer
        structure = distributed.local_structure(self.net) if ctx.dist.active else None
        self.meta_step = MetaStep(self.net, phi, scope=self.scope, mode=self.meta_cfg.grad,
                                  clone_buffers=clone_buffers, structure=structure, eps=self.meta_cfg.eps)
        self.refresh = self.meta_cfg.refresh or self.DEFAULT_REFRESH
        # directional: the meta direction v, kept between refreshes (and in resume checkpoints)
        self.meta_direction = torch.zeros(self.meta_step.direction_size(), device=ctx.device) \
            if self.meta_cfg.grad == "directional" else None
        # the real forward's outputs stand in for the directional step's forward at θ where they are the same
        # numbers: one process, uncompiled, no dropout (and no autocast, checked at each step)
        self._share_forward = self.meta_direction is not None and not ctx.dist.active and \
            self.net.__dict__.get("_compiled_call_impl") is None and \
            not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in self.net.modules())
        self.steps = 0

    def default_interval(self) -> int:
        """Training steps per meta update when `meta.interval` is null."""
        return self.DEFAULT_INTERVAL

    def meta_batch_size(self) -> int:
        """Images per meta batch: `meta.meta_batch_size`, else the method's default."""
        return self.meta_cfg.meta_batch_size or self.DEFAULT_META_BATCH

    def views(self, idx: Tensor, *, view: str = "weak") -> tuple[Tensor, Tensor, slice]:
        """The global batch's views and noisy labels, and this rank's rows of them.

        Under torchrun every rank runs the meta step on the whole global batch (same seeded views as one
        process, so the meta-parameters stay identical); only the ordinary step trains on this rank's rows.
        """
        dist = self.ctx.dist
        batch = dist.global_batch(idx)
        augment = distributed.unsharded(self.ctx.augment)
        x = getattr(augment, view)(self.splits.x_train[batch])  # an Augmenter view: weak, strong, randaugment
        return x, self.splits.y_train[batch], slice(dist.offset, dist.offset + len(idx))

    def inner_lr(self) -> float:
        """The virtual step size: `meta.inner_lr`, else the classifier's current learning rate."""
        return self.meta_cfg.inner_lr or self.ctx.optimizer.param_groups[0]["lr"]

    def maybe_meta_update(self, inner_loss, meta_loss, *, lr: float | None = None,
                          outputs: tuple[Tensor, ...] | None = None) -> None:
        """Run the meta update on this step if it falls on the `interval` cadence. `outputs`: the real forward's
        (logits, embedding) on the whole batch the inner loss reads, reused by the directional step where valid."""
        if self.steps % self.interval == 0:
            directional = {} if self.meta_direction is None else {
                "direction": self.meta_direction, "refresh": self.steps % (self.interval * self.refresh) == 0}
            if directional and outputs is not None and self._share_forward and \
                    not torch.is_autocast_enabled(outputs[0].device.type):
                directional["outputs"] = outputs
            self.meta_step.step(self.meta_optimizer, inner_loss, meta_loss, lr=lr or self.inner_lr(),
                                average=self.ctx.dist.all_mean, **directional)  # the identity in one process
        self.steps += 1


class WeightNet(nn.Module):
    """MW-Net's VNet: per-sample loss → weight in (0, 1) (1 → 100 → 1, out-of-place ReLU, sigmoid)."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(1, hidden), nn.Linear(hidden, 1)

    def forward(self, losses: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(losses[:, None])))).squeeze(1)


def weighted_loss(wnet: WeightNet, logits: Tensor, labels: Tensor, *, normalize: bool, train_weights: bool,
                  dist: distributed.Distributed | None = None) -> Tensor:
    """Σ_i w̄_i ℓ_i with w = VNet(ℓ.detach()) normalised within the batch (if non-zero), else mean_i w_i ℓ_i.

    train_weights=True keeps the graph to the weighting net (the virtual step); False is the real step. `dist`
    (the real step under torchrun): the rows are this rank's part, normalised by the global batch's Σw or size.
    """
    losses = F.cross_entropy(logits, labels, reduction="none")
    with torch.set_grad_enabled(train_weights and torch.is_grad_enabled()):
        weights = wnet(losses.detach())
    total = weights.sum() if normalize else torch.tensor(float(len(losses)), device=losses.device)
    if dist is not None and dist.active:
        total = dist.all_sum(total.detach())
    if normalize:
        total = torch.where(total > 0, total, torch.ones_like(total))
    return (weights * losses).sum() / total


class Rectifier(nn.Module):
    """VRI's rectifier: (embedding, noisy-label embedding) → per-class multiplier v ∈ (0, 1)^C on the logits.

    MLP d+64 → 1024 → 512 → 512 (tanh), heads μ and ρ (σ = exp(ρ/2)), v = sigmoid(μ + σ·ε); Xavier-normal
    weights, zero biases. The prior pass replaces the label embedding by zeros.
    """

    def __init__(self, feature_dim: int, n_classes: int, *, label_dim: int = 64, widths=(1024, 512, 512)):
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, label_dim)
        layers: list[nn.Module] = []
        width = feature_dim + label_dim
        for out in widths:
            layers += [nn.Linear(width, out), nn.Tanh()]
            width = out
        self.mlp = nn.Sequential(*layers)
        self.mu, self.rho = nn.Linear(width, n_classes), nn.Linear(width, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def distribution(self, features: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """(μ, σ) of the rectifier (labels=None: the prior pass)."""
        if labels is None:
            label_part = features.new_zeros(features.shape[0], self.label_embedding.embedding_dim)
        else:
            label_part = self.label_embedding(labels)
        hidden = self.mlp(torch.cat([features, label_part], dim=1))
        return self.mu(hidden), torch.exp(self.rho(hidden) / 2)

    def forward(self, features: Tensor, labels: Tensor, *, generator: torch.Generator | None = None,
                rows: tuple[int, int] | None = None) -> Tensor:
        """`rows` = (batch size, first row) when these are part of a larger batch: the noise is drawn for the whole
        batch and this part's rows kept (the draws of one process, under torchrun)."""
        mu, sigma = self.distribution(features, labels)
        total, first = rows or (len(mu), 0)
        noise = torch.randn((total, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
        return torch.sigmoid(mu + sigma * noise[first:first + len(mu)])


def vri_kl(rectifier: Rectifier, features: Tensor, labels: Tensor) -> Tensor:
    """The official VRI KL term (σ passed where log σ belongs, as in the original); no gradient to the classifier."""
    mu_q, s_q = rectifier.distribution(features, labels)
    mu_p, s_p = rectifier.distribution(features, None)
    return ((s_p - s_q) + (torch.exp(2 * s_q) + (mu_q - mu_p) ** 2) / (2 * torch.exp(2 * s_p)) - 0.5).mean()


def soft_label_kl(p: Tensor, y: Tensor, *, norm: str, rows: int | None = None) -> Tensor:
    """KL(p‖y) averaged over B·C entries (norm 'BC') or over B (norm 'B'); `rows` = B when `p` is part of a
    larger batch (this rank's addend under torchrun)."""
    total = (p * (torch.log(p.clamp_min(1e-30)) - torch.log(y + 1e-10))).sum()
    return total / _norm_count(p, norm, rows)


def entropy(p: Tensor, *, norm: str, rows: int | None = None) -> Tensor:
    """−Σ p log p averaged like `soft_label_kl`."""
    total = -(p * torch.log(p.clamp_min(1e-30))).sum()
    return total / _norm_count(p, norm, rows)


def _norm_count(p: Tensor, norm: str, rows: int | None) -> int:
    rows = p.shape[0] if rows is None else rows
    return rows * p.shape[1] if norm == "BC" else rows


def out_features(model: nn.Module) -> int:
    """Width of the penultimate embedding (the head's input)."""
    return model.head.in_features


def unlabelled_subset(n: int, size: int, *, seed: int) -> Tensor:
    """A fixed, seeded random subset of `size` of range(n), sorted (labels are never read through it)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[: min(size, n)].sort().values
