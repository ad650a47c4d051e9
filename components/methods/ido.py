"""`ido`: wrong events + Beta mixture + the three-term dynamically weighted loss (Zhang et al., NeurIPS 2025).

Stage one's wrong-event counts seed the mixture; every stage-two batch adds its own wrong events
(weak and strong view, train mode, before the step), is scored by the class-wise (or global) Beta
mixture, and trains on τ1·CE + ε·logit-consistency + τ2·entropy. The mixture is refit after each epoch.
docs/methods/ido.md lists the settings and where lnlflow departs from the official code.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.methods.base import MethodContext, Stage2Method
from components.methods.ido_loss import ido_loss
from components.methods.mixtures import ClassWiseBetaMixture, ido_weights


class IdoParams(MethodParams):
    """IDO's settings, params.yaml stage2.ido (docs/methods/ido.md): defaults are the recommended ones, the
    official code's values reachable."""

    bmm_scope: Literal["class", "global"] = "class"
    out_of_range: Literal["clip", "zero"] = "clip"
    sort_components: bool = True
    degenerate_fallback: Literal["global", "none"] = "global"
    em_iters_init: int = Field(20, ge=1)
    em_iters_epoch: int | None = Field(None, ge=1, description="default: 2 (class) or 1 (global)")
    entropy_confidence_weight: bool = False


class IDO(Stage2Method):
    """Instance-level difficulty modelling and dynamic optimisation."""

    KIND = "ido"  # params.yaml stage2.method
    PARAMS = IdoParams  # params.yaml stage2.ido

    DDP_ROWS, DDP_SUMS = ("counts",), ("_sums",)

    INITS = ("base",)  # stage two continues from stage one's base model, as the official code does

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        self.cfg = ctx.params.stage2.ido
        self.labels = self.splits.y_train.cpu().numpy()
        self.counts = ctx.wrong_events.astype(np.int64).copy()
        self.mixture = ClassWiseBetaMixture(
            self.splits.n_classes,
            scope=self.cfg.bmm_scope,
            degenerate_fallback=self.cfg.degenerate_fallback,
            sort_components=self.cfg.sort_components,
            out_of_range=self.cfg.out_of_range,
        ).fit(self.counts, self.labels, iters=self.cfg.em_iters_init)
        default_iters = 2 if self.cfg.bmm_scope == "class" else 1
        self.epoch_iters = self.cfg.em_iters_epoch or default_iters
        self._sums = np.zeros(4)  # tau1, eps, tau2, samples — per-epoch means for the log

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self.splits.x_train[idx], self.splits.y_train[idx]
        aug = self.ctx.augment
        z_weak, _ = self.model(aug.weak(x))
        z_strong, _ = self.model(aug.strong(x))
        wrong = (z_weak.detach().argmax(1) != y).long() + (z_strong.detach().argmax(1) != y).long()
        rows = idx.cpu().numpy()
        self.counts[rows] += wrong.cpu().numpy()
        tau1, eps_w, tau2 = ido_weights(*self.mixture.predict(self.counts[rows], self.labels[rows]))
        self._sums += (tau1.sum(), eps_w.sum(), tau2.sum(), len(rows))
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=z_weak.device)  # noqa: E731
        loss, _ = ido_loss(
            z_weak, z_strong, y, as_tensor(tau1), as_tensor(eps_w), as_tensor(tau2),
            entropy_confidence_weight=self.cfg.entropy_confidence_weight,
        )
        return loss, z_weak

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        self.mixture.fit(self.counts, self.labels, iters=self.epoch_iters)
        tau1, eps_w, tau2, n = self._sums
        self._sums[:] = 0
        return {"mean_tau1": tau1 / n, "mean_eps": eps_w / n, "mean_tau2": tau2 / n}

    def noise_scores(self) -> np.ndarray:
        """The mixture's posterior of the noisy component on the final wrong-event counts."""
        return self.mixture.predict(self.counts, self.labels)[1]
