"""`coteaching`: two networks, each updated on the samples its peer finds easiest (Han et al., NeurIPS 2018;
docs/methods/coteaching.md).

In every batch each network ranks the samples by its own cross-entropy and keeps the (1 − forget_rate(t))
fraction with the smallest loss; each network is then updated on its peer's selection. forget_rate(t) ramps
linearly from 0 to τ^c over the first `num_gradual` epochs of the official schedule (its epoch 0 is the untrained
evaluation, so training epoch 1 already forgets τ^c/(T_k − 1)), then stays at τ. The first network is the one
evaluated and saved. Noise scores: how often the two selections rejected a sample during the epochs at the
full forget rate (the last epoch's if training ends before the ramp does).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from components.config.section import MethodParams
from components.errors import LnlError
from components.methods.base import MethodContext, Stage2Method
from components.methods.mixtures import ClassWiseBetaMixture
from components.methods.two_networks import make_peer, small_loss_selection

SYNTHETIC_RATE_KINDS = ("symmetric_exclusive", "symmetric_inclusive", "symmetric_inclusive_per_sample",
                        "symmetric_exclusive_exact", "pairflip", "classmap", "instance")


def forget_schedule(tau: float, epochs: int, *, num_gradual: int, exponent: float) -> np.ndarray:
    """forget_rate of training epochs 1..epochs (index 0 = epoch 1), as the official loop uses it.

    Official: rate_schedule = τ everywhere, rate_schedule[:T_k] = linspace(0, τ^c, T_k); epoch 0 only evaluates
    the untrained networks and training epoch e (1, 2, ...) uses rate_schedule[e]. So the first trained epoch
    already forgets τ^c/(T_k − 1), and the full rate is reached at epoch T_k − 1.
    """
    official = np.full(epochs + 1, tau, dtype=np.float64)
    ramp = np.linspace(0.0, tau**exponent, num_gradual)
    official[: min(num_gradual, epochs + 1)] = ramp[: epochs + 1]
    return official[1:]


def estimated_noise_rate(ctx: MethodContext) -> float:
    """The mean noisy-component posterior of a Beta mixture over stage one's wrong events.

    The global mixture: per-class min-max normalisation would split an almost clean class in two.
    """
    labels = ctx.splits.y_train.cpu().numpy()
    mixture = ClassWiseBetaMixture(ctx.splits.n_classes, scope="global").fit(ctx.wrong_events, labels, iters=20)
    return float(np.mean(mixture.predict(ctx.wrong_events, labels)[1]))


def resolve_forget_rate(ctx: MethodContext) -> float:
    """τ: a number, the configured noise rate (as in the paper), or stage one's estimate."""
    setting = ctx.params.stage2.coteaching.forget_rate
    if isinstance(setting, float):
        return setting
    if setting == "estimate":
        return min(estimated_noise_rate(ctx), 0.99)
    noise = ctx.params.noise
    if noise.kind == "none":
        return 0.0
    if noise.kind not in SYNTHETIC_RATE_KINDS:
        raise LnlError(f"stage2.coteaching.forget_rate: noise.kind '{noise.kind}' has no configured rate; "
                       "set a number or 'estimate'")
    return noise.rate


class CoteachingParams(MethodParams):
    """Co-teaching's settings, params.yaml stage2.coteaching (Han et al., NeurIPS 2018): two networks, each
    trained on its peer's small-loss selection."""

    forget_rate: float | Literal["noise_rate", "estimate"] = Field(
        "noise_rate",
        description="τ: noise_rate = noise.rate (the paper); estimate = stage one's wrong-event mixture; or a number",
    )
    num_gradual: int = Field(10, ge=1, description="T_k: epochs over which the forget rate ramps up")
    exponent: float = Field(1.0, gt=0, description="c: the ramp goes from 0 to τ^c")

    @field_validator("forget_rate")
    @classmethod
    def _rate(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 <= value < 1:
            raise ValueError("forget_rate must be in [0, 1), 'noise_rate' or 'estimate'")
        return value


class CoTeaching(Stage2Method):
    """Cross-update of two networks on each other's small-loss selections."""

    KIND = "coteaching"  # params.yaml stage2.method
    PARAMS = CoteachingParams  # params.yaml stage2.coteaching

    DEFAULT_INIT = "scratch"  # as in the paper
    STATE_SKIP = Stage2Method.STATE_SKIP + ("peer_trainer",)  # the peer (checkpointed) or a wrapper around it
    DDP_ROWS = ("rejected_last",)

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        cfg = ctx.params.stage2.coteaching
        self.tau = resolve_forget_rate(ctx)
        self.rates = forget_schedule(self.tau, ctx.params.stage2.epochs, num_gradual=cfg.num_gradual,
                                     exponent=cfg.exponent)
        self.peer = make_peer(ctx)
        self.peer_trainer = ctx.dist.wrap(self.peer)  # the peer itself, or its DDP wrapper under torchrun
        # Two copies of the base model would stay identical on identical inputs: give each its own view then.
        self.separate_views = ctx.init == "base"
        n = len(ctx.splits.y_train)
        self.epoch = 1
        self.rejected_full = torch.zeros(n, device=ctx.device)  # rejections during full-rate epochs
        self.rejected_last = torch.zeros(n, device=ctx.device)  # rejections during the current epoch
        self.rejected_previous = torch.zeros(n, device=ctx.device)  # ... and during the one before
        self.full_rate_epochs = 0

    @property
    def forget_rate(self) -> float:
        return float(self.rates[min(self.epoch, len(self.rates)) - 1])

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Both selections are made on the global batch's losses (gathered under torchrun), as in one process."""
        dist = self.ctx.dist
        x, y = self.splits.x_train[idx], self.splits.y_train[idx]
        view = self.ctx.augment.weak(x)
        logits1, _ = self.model(view)
        logits2, _ = self.peer_trainer(self.ctx.augment.weak(x) if self.separate_views else view)
        losses1 = F.cross_entropy(logits1, y, reduction="none")
        losses2 = F.cross_entropy(logits2, y, reduction="none")
        both = dist.gather_cat(torch.stack([losses1, losses2], 1).detach())  # the global batch, in order
        keep = 1.0 - self.forget_rate
        chosen_by_1 = small_loss_selection(both[:, 0], keep)
        chosen_by_2 = small_loss_selection(both[:, 1], keep)
        rejected = torch.full((len(both),), 2.0, device=y.device)
        rejected[chosen_by_1] -= 1
        rejected[chosen_by_2] -= 1
        self.rejected_last[idx] += rejected[dist.offset:dist.offset + len(idx)]
        # Each network learns from the samples its peer kept (means over the global selections).
        kept = len(chosen_by_1)
        loss = (losses1[dist.in_shard(chosen_by_2)].sum() + losses2[dist.in_shard(chosen_by_1)].sum()) / kept
        return dist.batch_share(loss), logits1

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        rate = self.forget_rate
        if rate >= self.tau and self.tau > 0:
            self.rejected_full += self.rejected_last
            self.full_rate_epochs += 1
        summary = {"forget_rate": rate, "rejected_fraction": float(self.rejected_last.mean()) / 2}
        self.rejected_previous = self.rejected_last.clone()
        self.rejected_last.zero_()
        self.epoch = epoch + 1
        return summary

    def noise_scores(self) -> np.ndarray:
        """Fraction of the two networks' selections that rejected each sample (full-rate epochs)."""
        if self.full_rate_epochs:
            scores = self.rejected_full / (2 * self.full_rate_epochs)
        else:
            scores = self.rejected_previous / 2
        return scores.cpu().numpy().astype(np.float64)
