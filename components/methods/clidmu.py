"""`clidmu`: meta-learning without clean labels (CLID-MU, Hu et al., KDD 2025; docs/methods/clidmu.md).

The meta loss is CLID, the divergence between the neighbour structure of the last hidden layer and that of the
output layer, on a fixed random subset of training images whose labels are never read. Hosts: the MW-Net
weighting net (default) or the VRI rectifier (the paper's main host).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.errors import LnlError
from components.methods.base import MethodContext
from components.methods.clid import clid_loss
from components.methods.meta_common import (
    EndlessBatches,
    MetaMethod,
    Rectifier,
    WeightNet,
    make_meta_optimizer,
    out_features,
    unlabelled_subset,
    vri_kl,
    weighted_loss,
)
from components.training import distributed
from components.training.streams import stream_seed, torch_generator

DEFAULT_META_LR = {"vri": 0.01, "wnet": 1e-3}


class ClidMuParams(MethodParams):
    """CLID-MU's settings, params.yaml stage2.clidmu (docs/methods/clidmu.md): label-free meta loss on a fixed
    random subset of training images."""

    host: Literal["vri", "wnet"] = Field(
        "wnet", description="wnet (MW-Net's weighting net; best on digits) | vri (the rectifier, the paper's main host)")
    meta_set_size: int = Field(1000, ge=2, description="training images whose labels are never read")
    tau: float = Field(0.5, gt=0)
    meta_optimizer: Literal["adam", "sgd"] = "adam"
    meta_lr: float | None = Field(None, gt=0, description="default: 0.01 (vri), 1e-3 (wnet)")
    meta_weight_decay: float = Field(5e-4, ge=0)
    vri_use_kl: bool = Field(False, description="the official KL term has no gradient path to the classifier")
    vri_kl_weight: float = Field(0.01, ge=0)
    wnet_normalize_weights: bool = True
    aug: Literal["standard", "strong_all"] = Field("standard", description="strong_all = the official RandAugment view for every image")


class ClidMu(MetaMethod):
    """CLID meta loss with the VRI or the MW-Net host."""

    KIND = "clidmu"  # params.yaml stage2.method
    PARAMS = ClidMuParams  # params.yaml stage2.clidmu

    DEFAULT_INIT = "scratch"  # as the official `main_vri.py`: from initialisation, no warm-up

    STATE_SKIP = MetaMethod.STATE_SKIP + ("meta_images",)  # a fixed seeded subset of the training images
    # The VRI rectifier (1024-512-512 units) is larger than a small classifier: a meta update every 3rd step keeps
    # its share of a step small and stays within a point of the exact gradient (docs/methods/meta_step.md, the cost goal)
    VRI_INTERVAL = 3

    def default_interval(self) -> int:
        return self.VRI_INTERVAL if self.cfg.host == "vri" else self.DEFAULT_INTERVAL

    def __init__(self, ctx: MethodContext):
        cfg = ctx.params.stage2.clidmu
        n_train = len(ctx.splits.y_train)
        if cfg.meta_set_size > n_train:
            raise LnlError(f"stage2.clidmu.meta_set_size: {cfg.meta_set_size} exceeds the {n_train} training "
                           "samples; choose at most that many")
        self.cfg = cfg
        if cfg.host == "vri":
            self.host = Rectifier(out_features(distributed.unwrap(ctx.model)), ctx.splits.n_classes).to(ctx.device)
        else:
            self.host = WeightNet().to(ctx.device)
        phi = list(self.host.parameters())
        optimizer = make_meta_optimizer(cfg.meta_optimizer, phi, lr=cfg.meta_lr or DEFAULT_META_LR[cfg.host],
                                        weight_decay=cfg.meta_weight_decay)
        super().__init__(ctx, phi, optimizer)
        # Only images of the meta set are ever indexed: no label tensor can reach the meta loss.
        # Each random choice has its own named stream: the meta set is not the loader's first batches (same seed).
        seed = ctx.params.stage2.seed
        subset = unlabelled_subset(n_train, cfg.meta_set_size, seed=stream_seed(seed, "clidmu.meta_set"))
        self.meta_images = ctx.splits.x_train[subset.to(ctx.device)]
        self.meta_batches = EndlessBatches(len(self.meta_images), self.meta_batch_size(),
                                           seed=stream_seed(seed, "clidmu.meta_batches"), device=ctx.device)
        self.noise_gen = torch_generator(seed, "clidmu.vri_noise", ctx.device)

    @property
    def _view_name(self) -> str:
        """`strong_all`: the official RandAugment view for every image (training and meta); else the weak view."""
        return "randaugment" if self.cfg.aug == "strong_all" else "weak"

    def _view(self, x: Tensor) -> Tensor:
        augment = distributed.unsharded(self.ctx.augment)  # meta images are the same on every rank
        return getattr(augment, self._view_name)(x)

    def _host_loss(self, logits: Tensor, embedding: Tensor, labels: Tensor) -> Tensor:
        if self.cfg.host == "wnet":
            return weighted_loss(self.host, logits, labels, normalize=self.cfg.wnet_normalize_weights,
                                 train_weights=True)
        v = self.host(embedding.detach(), labels, generator=self.noise_gen)
        loss = F.cross_entropy(v * logits, labels)
        if self.cfg.vri_use_kl:  # a function of φ and the detached embedding: no gradient to θ; compute parity only
            loss = loss + self.cfg.vri_kl_weight * vri_kl(self.host, embedding.detach(), labels)
        return loss

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.ctx.dist
        x, y, mine = self.views(idx, view=self._view_name)  # the global batch and this rank's rows
        x_meta = self._view(self.meta_images[self.meta_batches.next()])

        def inner(forward) -> Tensor:
            return self._host_loss(*forward(x), y)

        def meta_loss(forward) -> Tensor:
            logits, embedding = forward(x_meta)
            return clid_loss(embedding, logits, tau=self.cfg.tau)

        logits, embedding = self.model(x[mine])  # the real forward, first: the directional meta step reuses it
        self.maybe_meta_update(inner, meta_loss, outputs=(logits, embedding))
        y = y[mine]
        if self.cfg.host == "wnet":
            loss = weighted_loss(self.host, logits, y, normalize=self.cfg.wnet_normalize_weights, train_weights=False,
                                 dist=dist)
            return dist.batch_share(loss), logits
        with torch.no_grad():
            v = self.host(embedding.detach(), y, generator=self.noise_gen, rows=(len(x), mine.start))
        loss = F.cross_entropy(v * logits, y, reduction="sum") / len(x)
        return dist.batch_share(loss), logits
