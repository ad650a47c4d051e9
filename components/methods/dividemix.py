"""`dividemix`: co-divide with loss GMMs, then MixMatch on the labelled/unlabelled split (Li et al., ICLR 2020;
docs/methods/dividemix.md). Stage one is net 1's warm-up (to its last epoch, as the paper's fixed-length warm-up, or to
the label-wave base model: `warmup_end`). Net 2, as in the official code, is initialised independently (its own
named random stream, `model.weights` if set) and warmed up with cross-entropy for as many epochs, with stage one's
recipe (optimiser, the schedule's first epochs, clipping, batch size, weak views), on its own batch order
(`peer_init: copy` starts it as a copy of net 1 instead: the two first divisions are then identical).

Every epoch begins with a division: each network's per-sample cross-entropy (eval mode, un-augmented), min-max
normalised (averaged over the last `loss_history` epochs), is fitted by a 2-component GMM; a sample's clean
probability is the posterior of the lower-mean component. Each network then trains on its peer's division:
the batch's samples with clean probability above `p_threshold` are labelled (targets refined by that
probability, sharpened), an equal number of unlabelled samples get co-guessed targets (4 predictions, sharpened),
and MixMatch mixes them; loss = Lx + λ_u·ramp·Lu + a uniform-prior penalty.

Deviation from the official loop, for the shared training loop: both networks take their step in the same
optimiser step (their parameters are disjoint, so each gets exactly its own gradient), the batch's labelled
part is the labelled samples among the loop's batch (one pass over the labelled set per epoch, as in the
official code), and the unlabelled part is drawn, same size, from a seeded cycle over the unlabelled set.
Prediction = the sum of both networks' logits (the saved model is that ensemble).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from components.config.section import MethodParams
from components.errors import LnlError
from components.methods.base import MethodContext, Stage2Method
from components.methods.mixtures import gaussian_clean_probability
from components.methods.two_networks import make_peer
from components.models import build_model
from components.models.ensemble import Ensemble, ensemble_architecture
from components.training import distributed
from components.training.loop import batches, predict_logits
from components.training.optim import build_optimizer, build_schedule, clip_gradients
from components.training.setup import make_augmenter
from components.training.streams import numpy_generator, stream_seed, torch_generator

ASYMMETRIC_KINDS = ("pairflip", "classmap")
SYMMETRIC_KINDS = ("symmetric_exclusive", "symmetric_inclusive", "symmetric_inclusive_per_sample",
                   "symmetric_exclusive_exact")


def lambda_u_preset(kind: str, rate: float, n_classes: int) -> float:
    """λ_u per setting, as DivideMix uses it (Li et al., ICLR 2020): 0 without noise, for asymmetric noise and for
    ≤ 20 % symmetric noise (the maintainers' answers in issues #26 and #50 of the official repository); 50 at ≥ 90 %
    symmetric with ≤ 10 classes; 150 at ≥ 50 % symmetric with more classes (these CIFAR-100 cells are unverified);
    25 otherwise (also instance and real noise)."""
    if kind not in SYMMETRIC_KINDS + ASYMMETRIC_KINDS + ("none",):  # e.g. instance or real noise: the default
        return 25.0
    if kind == "none" or kind in ASYMMETRIC_KINDS or rate <= 0.2:
        return 0.0
    if n_classes > 10 and rate >= 0.5:
        return 150.0
    if rate >= 0.9:
        return 50.0
    return 25.0


def sharpen(p: Tensor, temperature: float) -> Tensor:
    """p^(1/T), renormalised over classes."""
    p = p ** (1.0 / temperature)
    return p / p.sum(1, keepdim=True)


def minmax(x: Tensor) -> Tensor:
    """Scale to [0, 1] (a constant vector maps to zeros)."""
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


def prior_penalty(probs: Tensor, rows: int, dist: distributed.Distributed) -> Tensor:
    """KL(uniform ‖ mean prediction) over the `rows` mixed rows, of which `probs` are this rank's part.

    Under torchrun the mean is global and the result is this rank's addend: its gradient is the exact one for
    these rows (the penalty's slope at the global mean, −prior/mean, over `rows`), and the addends sum to the
    penalty's value.
    """
    n_classes = probs.shape[1]
    prior = torch.full((n_classes,), 1.0 / n_classes, device=probs.device)
    local = probs.sum(0)
    if not dist.active:
        return (prior * torch.log(prior / (local / rows))).sum()
    mean = dist.all_sum(local) / rows
    value = (prior * torch.log(prior / mean)).sum()
    slope = -prior / mean
    return (slope * local / rows).sum() + (value - (slope * mean).sum()) / dist.world


def independent_peer(ctx: MethodContext) -> nn.Module:
    """Net 2: its own initialisation, then a cross-entropy warm-up as long as net 1's (`ctx.warmup_epochs`).

    Each random choice has a named stream of stage2.seed, so the result does not depend on the global RNG. The
    peer joins the stage-two optimiser afterwards; under torchrun every rank computes the same warm-up (DDP then
    broadcasts rank 0's weights).
    """
    if ctx.arch is None:
        raise LnlError("dividemix: net 2 needs the base model's architecture in the method's context")
    params, splits, seed = ctx.params, ctx.splits, ctx.params.stage2.seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, "dividemix.peer_init"))
        peer = build_model(ctx.arch, weights=params.model.weights).to(ctx.device)
    warm = params.stage1  # net 1's warm-up recipe: optimiser, schedule (its first epochs), clipping, batch size
    optimizer = build_optimizer(peer.parameters(), warm)
    schedule = build_schedule(optimizer, warm)
    views = make_augmenter(params.augment, splits, stream_seed(seed, "dividemix.peer_warmup_views"))
    order = torch_generator(seed, "dividemix.peer_warmup_batches")
    peer.train()
    for epoch in range(1, ctx.warmup_epochs + 1):
        cut = batches(len(splits.y_train), warm.batch_size, order, splits.x_train.device)
        for step, idx in enumerate(cut):
            if schedule is not None:
                schedule.before_batch(epoch, step, len(cut))
            logits, _ = peer(views.weak(splits.x_train[idx]))
            loss = F.cross_entropy(logits, splits.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(optimizer, warm.grad_clip)
            optimizer.step()
        if schedule is not None:
            schedule.step()
    peer.train(ctx.model.training)
    ctx.optimizer.add_param_group({"params": list(peer.parameters())})
    return peer


class CycledSubset:
    """Batches of any size drawn without replacement from a fixed index set, reshuffled every pass (seeded)."""

    def __init__(self, indices: Tensor, generator: torch.Generator):
        self.indices, self.gen = indices, generator
        self._order = indices[:0]

    def take(self, n: int) -> Tensor:
        out = []
        while n > 0 and len(self.indices):
            if not len(self._order):
                perm = torch.randperm(len(self.indices), generator=self.gen).to(self.indices.device)
                self._order = self.indices[perm]
            out.append(self._order[:n])
            n -= len(out[-1])
            self._order = self._order[len(out[-1]):]
        return torch.cat(out) if out else self.indices[:0]


class DivideMixParams(MethodParams):
    """DivideMix's settings, params.yaml stage2.dividemix (Li et al., ICLR 2020; docs/methods/dividemix.md): GMM
    co-divide + MixMatch; stage one is the warm-up."""

    p_threshold: float = Field(0.5, gt=0, lt=1, description="clean probability above which a sample is labelled")
    temperature: float = Field(0.5, gt=0, description="sharpening temperature T")
    alpha: float = Field(4.0, gt=0, description="MixMatch Beta(α, α)")
    lambda_u: float | None = Field(None, ge=0, description="unlabelled loss weight; null = the per-setting "
                                      "preset (0 for asymmetric or ≤ 20 % symmetric noise, 25 by default, ...)")
    rampup_epochs: int = Field(16, ge=1, description="λ_u ramps up linearly over this many epochs")
    loss_history: int | None = Field(None, ge=1, description="epochs of losses averaged for the GMM; null = 5 at ≥ 90% noise, else 1")
    gmm_max_iter: int = Field(10, ge=1)
    gmm_tol: float = Field(1e-2, gt=0)
    gmm_reg_covar: float = Field(5e-4, gt=0)
    warmup_end: Literal["last", "base"] = Field(
        "last", description="net 1's warm-up end: last = stage one's final epoch (the paper's fixed-length "
        "warm-up) | base = stage one's base model (label wave)",
    )
    peer_init: Literal["independent", "copy"] = Field(
        "independent", description="independent = net 2 gets its own initialisation and its own CE warm-up of "
        "as many epochs as net 1's (official) | copy = net 2 starts as a copy of net 1",
    )


class DivideMix(Stage2Method):
    """Two networks, GMM co-divide, label refinement, co-guessing, MixMatch."""

    KIND = "dividemix"  # params.yaml stage2.method
    PARAMS = DivideMixParams  # params.yaml stage2.dividemix

    INITS = ("base",)  # the warm-up is stage one

    @classmethod
    def warmup_end(cls, params) -> str:
        return params.stage2.dividemix.warmup_end  # last = the paper's fixed-length warm-up
    STATE_SKIP = Stage2Method.STATE_SKIP + ("nets", "trainers", "ensemble")  # checkpointed as model and peer

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        self.cfg = cfg = ctx.params.stage2.dividemix
        noise = ctx.params.noise
        self.lambda_u = cfg.lambda_u if cfg.lambda_u is not None else lambda_u_preset(
            noise.kind, noise.rate, ctx.splits.n_classes)
        self.history_len = cfg.loss_history or (5 if noise.kind != "none" and noise.rate >= 0.9 else 1)
        self.peer = independent_peer(ctx) if cfg.peer_init == "independent" else make_peer(ctx)
        self.nets = (distributed.unwrap(self.model), self.peer)  # divided, guessing, evaluated
        self.trainers = (self.model, ctx.dist.wrap(self.peer))  # trained: the nets, or DDP wrappers under torchrun
        self.ensemble = Ensemble(list(self.nets))
        seed = ctx.params.stage2.seed
        self.gen = torch_generator(seed, "dividemix.mixmatch")  # MixMatch permutations and unlabelled cycles
        self.rng = numpy_generator(seed, "dividemix.lambda")  # MixMatch λ
        n = len(ctx.splits.y_train)
        self.history = [torch.zeros(0, n, device=ctx.device) for _ in self.nets]
        batch = ctx.params.stage2.batch_size
        self.epoch, self.steps = 1, 0
        self.steps_per_epoch = max(1, min(-(-n // batch), n // 2))  # as components.training.loop.batches cuts
        self._divide()

    @property
    def eval_model(self) -> nn.Module:
        return self.ensemble

    def eval_arch(self, arch: dict) -> dict:
        return ensemble_architecture(arch, 2)

    # ------------------------------------------------------------------ division

    def _divide(self) -> dict[str, float]:
        """Fit each network's loss GMM; net k then trains on the division of its peer."""
        x, y = self.splits.x_train, self.splits.y_train
        dist = self.ctx.dist
        start, stop = dist.span(len(y))  # under torchrun each rank predicts its part; all see every loss
        self.clean_prob, train_correct = [], None
        for k, net in enumerate(self.nets):
            logits = predict_logits(net, x[start:stop])
            per_sample = F.cross_entropy(logits, y[start:stop], reduction="none")
            losses = minmax(dist.gather_cat(per_sample))
            self.history[k] = torch.cat([self.history[k], losses[None]])[-self.history_len:]
            prob = gaussian_clean_probability(
                self.history[k].mean(0).cpu().numpy(), max_iter=self.cfg.gmm_max_iter, tol=self.cfg.gmm_tol,
                reg_covar=self.cfg.gmm_reg_covar, seed=stream_seed(self.ctx.params.stage2.seed, "dividemix.gmm", bits=32),
            )
            self.clean_prob.append(torch.as_tensor(prob, dtype=torch.float32, device=y.device))
            if k == 0:
                train_correct = dist.gather_cat(logits.argmax(1) == y[start:stop])
        self.unlabelled = []
        for k in range(2):
            peer_prob = self.clean_prob[1 - k]
            self.unlabelled.append(CycledSubset(torch.nonzero(peer_prob <= self.cfg.p_threshold).flatten(), self.gen))
        return {
            "train_acc": float(train_correct.float().mean()),  # eval-mode, first network, against the given labels
            "labelled_fraction": float(np.mean([float((p > self.cfg.p_threshold).float().mean()) for p in self.clean_prob])),
        }

    # ------------------------------------------------------------------ training

    def _ramp(self) -> float:
        """λ_u's linear ramp over `rampup_epochs` epochs after the warm-up (fractional within an epoch)."""
        progress = self.epoch - 1 + self.steps / self.steps_per_epoch
        return float(np.clip(progress / self.cfg.rampup_epochs, 0.0, 1.0))

    def _net_loss(self, k: int, idx: Tensor) -> Tensor | None:
        """Network k's MixMatch loss on the batch, with its peer's division.

        Under torchrun every decision is the single process's: each rank builds the global batch's labelled and
        unlabelled sets, views and mixing (same seeded draws), the guesses are computed data-parallel, each rank
        trains on its part of the mixed rows, and the loss terms are this rank's addends of the global means.
        """
        net, peer, cfg, dist = self.nets[k], self.nets[1 - k], self.cfg, self.ctx.dist
        peer_prob = self.clean_prob[1 - k]
        batch = dist.global_batch(idx)
        labelled = batch[peer_prob[batch] > cfg.p_threshold]
        if len(labelled) == 0:
            return None
        unlabelled = self.unlabelled[k].take(len(labelled))
        aug, xs, n_classes = distributed.unsharded(self.ctx.augment), self.splits.x_train, self.splits.n_classes
        x1, x2 = aug.weak(xs[labelled]), aug.weak(xs[labelled])
        u1, u2 = aug.weak(xs[unlabelled]), aug.weak(xs[unlabelled])
        with torch.no_grad():
            peer.eval()  # the peer guesses in eval mode; the trained network in train mode (as official)
            w = peer_prob[labelled][:, None]
            onehot = F.one_hot(self.splits.y_train[labelled], n_classes).float()
            probs = self._probabilities
            px = (probs(net, x1) + probs(net, x2)) / 2
            targets_x = sharpen(w * onehot + (1 - w) * px, cfg.temperature)
            if len(unlabelled):
                pu = sum(probs(m, u) for m in (net, peer) for u in (u1, u2)) / 4
                targets_u = sharpen(pu, cfg.temperature)
            else:
                targets_u = onehot[:0]
            peer.train()
        inputs = torch.cat([x1, x2, u1, u2])
        targets = torch.cat([targets_x, targets_x, targets_u, targets_u])
        lam = float(self.rng.beta(cfg.alpha, cfg.alpha))
        lam = max(lam, 1 - lam)
        perm = torch.randperm(len(inputs), generator=self.gen).to(inputs.device)
        start, stop = dist.span(len(inputs))  # this rank's part of the mixed rows
        mixed_x = lam * inputs[start:stop] + (1 - lam) * inputs[perm[start:stop]]
        mixed_t = lam * targets[start:stop] + (1 - lam) * targets[perm[start:stop]]
        logits = self.trainers[k](mixed_x)[0].float()
        n_x, n_u = 2 * len(labelled), len(inputs) - 2 * len(labelled)
        is_x = torch.arange(start, stop, device=logits.device) < n_x
        loss_x = -(F.log_softmax(logits[is_x], 1) * mixed_t[is_x]).sum() / n_x
        if n_u:
            loss_u = ((torch.softmax(logits[~is_x], 1) - mixed_t[~is_x]) ** 2).sum() / (n_u * n_classes)
        else:
            loss_u = logits.sum() * 0
        penalty = prior_penalty(torch.softmax(logits, 1), len(inputs), dist)
        return loss_x + self.lambda_u * self._ramp() * loss_u + penalty

    def _probabilities(self, net: nn.Module, x: Tensor) -> Tensor:
        """softmax(net(x)) without gradient, computed data-parallel under torchrun."""
        return self.ctx.dist.split_forward(lambda rows: torch.softmax(net(rows)[0].float(), 1), x)

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, None]:
        losses = [loss for k in range(2) if (loss := self._net_loss(k, idx)) is not None]
        self.steps += 1
        if not losses:  # no sample of this batch is labelled for either network: a step that changes nothing
            return torch.zeros((), device=idx.device, requires_grad=True), None
        return self.ctx.dist.batch_share(sum(losses)), None

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        self.steps = 0
        self.epoch = epoch + 1
        return {"lambda_u": self.lambda_u, **self._divide()}

    def noise_scores(self) -> np.ndarray:
        """1 − the mean of both networks' clean probabilities from the latest division."""
        return (1 - (self.clean_prob[0] + self.clean_prob[1]) / 2).cpu().numpy().astype(np.float64)
