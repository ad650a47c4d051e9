"""`mwnet`: Meta-Weight-Net — a weighting net over per-sample losses, meta-learned so that one step on the
weighted loss lowers cross-entropy on the trusted (clean) validation split. The classic labelled reference
for `clidmu`'s label-free meta loss."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.methods.base import MethodContext
from components.methods.meta_common import (
    EndlessBatches,
    MetaMethod,
    WeightNet,
    make_meta_optimizer,
    require_trusted_split,
    weighted_loss,
)
from components.training.streams import stream_seed


class MwnetParams(MethodParams):
    """MW-Net's settings, params.yaml stage2.mwnet (docs/methods/mwnet.md): the weighting-net host with
    cross-entropy on the trusted validation split as the meta loss."""

    TRUSTED_META_SET = True  # its meta loss reads the validation split's labels

    meta_optimizer: Literal["adam", "sgd"] = "adam"
    meta_lr: float = Field(1e-3, gt=0)
    meta_weight_decay: float = Field(1e-4, ge=0, description="official VNet: Adam 1e-3, wd 1e-4")
    normalize_weights: bool = Field(
        True, description="Σ v·ℓ / Σ v (the default: see docs/methods/mwnet.md's ablation); false = the official "
        "script's mean of v·ℓ, which pairs with its SGD recipe (lr 0.1)")


class MWNet(MetaMethod):
    """VNet host, clean cross-entropy meta loss."""

    KIND = "mwnet"  # params.yaml stage2.method
    PARAMS = MwnetParams  # params.yaml stage2.mwnet

    DEFAULT_INIT = "scratch"  # as in the paper (the official script trains from initialisation)

    def __init__(self, ctx: MethodContext):
        cfg = ctx.params.stage2.mwnet
        require_trusted_split(ctx, "mwnet")
        self.cfg = cfg
        self.wnet = WeightNet().to(ctx.device)
        phi = list(self.wnet.parameters())
        optimizer = make_meta_optimizer(cfg.meta_optimizer, phi, lr=cfg.meta_lr, weight_decay=cfg.meta_weight_decay)
        super().__init__(ctx, phi, optimizer)
        self.meta_batches = EndlessBatches(len(ctx.splits.y_val), self.meta_batch_size(),
                                           seed=stream_seed(ctx.params.stage2.seed, "mwnet.meta_batches"), device=ctx.device)

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.ctx.dist
        x, y, mine = self.views(idx)  # the global batch (the meta step's) and this rank's rows
        meta = self.meta_batches.next()
        x_meta, y_meta = self.splits.x_val[meta], self.splits.y_val[meta]

        def inner(forward) -> Tensor:
            return weighted_loss(self.wnet, forward(x)[0], y, normalize=self.cfg.normalize_weights, train_weights=True)

        def meta_loss(forward) -> Tensor:
            return F.cross_entropy(forward(x_meta)[0], y_meta)

        logits, embedding = self.model(x[mine])  # the real forward, first: the directional meta step reuses it
        self.maybe_meta_update(inner, meta_loss, outputs=(logits, embedding))
        loss = weighted_loss(self.wnet, logits, y[mine], normalize=self.cfg.normalize_weights, train_weights=False,
                             dist=dist)
        return dist.batch_share(loss), logits
