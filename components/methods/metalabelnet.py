"""`metalabelnet`: soft labels from a single-layer net over frozen warm-up features, meta-learned so that one
step on them lowers cross-entropy on the trusted (clean) validation split (Algan & Ulusoy, arXiv 2103.10869;
docs/methods/metalabelnet.md).

Stage one is the warm-up: its model at the warm-up's end (`warmup_end`: stage one's last epoch, as the paper's
fixed-length warm-up, or the label-wave base model) initialises the classifier and, frozen, serves as the feature
encoder. Noisy labels are not read after warm-up. The real step trains on reverse cross-entropy against the
updated generator's (detached) soft labels, reusing the forward from before the meta update, as the official code
does.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from components.config.section import MethodParams
from components.methods.base import MethodContext
from components.methods.meta_common import (
    EndlessBatches,
    MetaMethod,
    entropy,
    make_meta_optimizer,
    out_features,
    require_trusted_split,
    soft_label_kl,
)
from components.training import distributed
from components.training.loop import predict_embeddings
from components.training.streams import stream_seed


class MetaLabelNetParams(MethodParams):
    """MetaLabelNet's settings, params.yaml stage2.metalabelnet (docs/methods/metalabelnet.md); the meta set is the
    trusted validation split."""

    TRUSTED_META_SET = True  # its meta loss reads the validation split's labels

    slp_lr: float = Field(1e-2, gt=0, description="Adam learning rate of the soft-label generator")
    slp_weight_decay: float = Field(1e-4, ge=0)
    alpha_inner: float | None = Field(
        None, gt=0, description="virtual step size; null = stage2.meta.inner_lr if set, else 1 (official, "
        "independent of the LR); setting both to different values is an error",
    )
    loss_norm: Literal["BC", "B"] = "BC"
    entropy_weight: float = Field(1.0, ge=0, description="1 makes the real loss exactly reverse cross-entropy")
    bn_meta: Literal["clone", "shared"] = Field("clone", description="shared = official (contaminates BN stats)")
    shuffle: bool = Field(True, description="False = official fixed order, meta batch i mod M")
    feature_source: Literal["frozen_warmup", "live_classifier"] = "frozen_warmup"
    feature_view: Literal["unaugmented", "augmented"] | None = Field(
        None, description="the frozen encoder's input: unaugmented = each training image as stored, encoded once "
        "when stage two starts (the encoder is frozen, so this is a lookup) | augmented = every batch's augmented "
        "view, encoded at every step (official); null = unaugmented with frozen_warmup, augmented with "
        "live_classifier (which has no fixed features)",
    )
    slp_init: Literal["default", "from_head"] = Field(
        "from_head", description="default = a fresh init (official) | from_head = a copy of the base model's head")
    warmup_end: Literal["last", "base"] = Field(
        "last", description="the warm-up's end (classifier start and frozen encoder): last = stage one's final "
        "epoch (the paper's fixed-length warm-up) | base = stage one's base model (label wave)",
    )

    def encoder_view(self) -> str:
        """The frozen encoder's input, `feature_view` with its default resolved."""
        if self.feature_view is not None:
            return self.feature_view
        return "unaugmented" if self.feature_source == "frozen_warmup" else "augmented"

    def inner_step(self, shared: float | None) -> float:
        """The virtual step: alpha_inner or stage2.meta.inner_lr (whichever is set; they must agree), else 1."""
        return self.alpha_inner if self.alpha_inner is not None else shared if shared is not None else 1.0

    def check(self, stage2: Any) -> None:
        if self.feature_view == "unaugmented" and self.feature_source == "live_classifier":
            raise ValueError("metalabelnet.feature_view 'unaugmented' needs feature_source 'frozen_warmup': the live "
                             "classifier's features change at every step, so there is nothing to encode once")
        mln, shared = self.alpha_inner, stage2.meta.inner_lr
        if mln is not None and shared is not None and mln != shared:
            raise ValueError(f"metalabelnet.alpha_inner ({mln}) and meta.inner_lr ({shared}) both set the virtual "
                             "step; set one of them (or both to the same value)")


class MetaLabelNet(MetaMethod):
    """Classifier + soft-label generator (Linear(d, C) + softmax) meta-learned on a clean meta set."""

    KIND = "metalabelnet"  # params.yaml stage2.method
    PARAMS = MetaLabelNetParams  # params.yaml stage2.metalabelnet

    INITS = ("base",)  # the warm-up model is the classifier's start and the frozen encoder
    # the frozen base model (rebuilt) or the model itself; its features of the stored images (recomputed)
    STATE_SKIP = MetaMethod.STATE_SKIP + ("encoder", "stored_features")
    # A fresh meta direction every step: its look-ahead step is 1, not the learning rate, so the direction belongs
    # to its batch, and reusing it collapsed training at sym-60 (docs/methods/meta_step.md, ablation).
    DEFAULT_REFRESH = 1

    def meta_batch_size(self) -> int:
        """`meta.meta_batch_size`, else the training batch size: the official meta loader's."""
        return self.meta_cfg.meta_batch_size or self.ctx.params.stage2.batch_size

    @classmethod
    def warmup_end(cls, params) -> str:
        return params.stage2.metalabelnet.warmup_end  # last = the paper's fixed-length warm-up (s1 epochs)

    def __init__(self, ctx: MethodContext):
        cfg = ctx.params.stage2.metalabelnet
        require_trusted_split(ctx, "metalabelnet")
        self.cfg = cfg
        net = distributed.unwrap(ctx.model)
        self.encoder = copy.deepcopy(net).eval().requires_grad_(False) if cfg.feature_source == "frozen_warmup" else net
        self.slp = nn.Linear(out_features(net), ctx.splits.n_classes).to(ctx.device)
        # unaugmented view: the frozen encoder's features of every stored training image, once (N × d floats: on
        # the training device, or in host memory when the images stream from disk, being larger than memory)
        streamed = not isinstance(ctx.splits.x_train, Tensor)
        self.stored_features = predict_embeddings(
            self.encoder, ctx.splits.x_train, out_device=torch.device("cpu") if streamed else None,
        ) if cfg.encoder_view() == "unaugmented" else None
        if cfg.slp_init == "from_head":
            self.slp.load_state_dict(net.head.state_dict())
        optimizer = make_meta_optimizer("adam", list(self.slp.parameters()), lr=cfg.slp_lr,
                                        weight_decay=cfg.slp_weight_decay)
        super().__init__(ctx, list(self.slp.parameters()), optimizer, clone_buffers=cfg.bn_meta == "clone")
        # the virtual step: metalabelnet.alpha_inner or the shared meta.inner_lr (config checks they agree),
        # else 1 as in the official code — never the classifier's learning rate
        self.inner_step = cfg.inner_step(ctx.params.stage2.meta.inner_lr)
        self.meta_batches = EndlessBatches(len(ctx.splits.y_val), self.meta_batch_size(),
                                           seed=stream_seed(ctx.params.stage2.seed, "metalabelnet.meta_batches"),
                                           device=ctx.device, shuffle=cfg.shuffle)

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            if self.encoder is self.net:  # live features: eval-mode pass so the real BN stats stay put
                was = self.net.training
                self.net.eval()
                features = self.net(x)[1]
                self.net.train(was)
                return features
            return self.encoder(x)[1]

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.ctx.dist
        x, _, mine = self.views(idx)  # the global batch (the meta step's) and this rank's rows; no noisy label
        logits, embedding = self.model(x[mine])  # the real forward, reused by the real step and the meta step
        if self.stored_features is not None:
            batch = dist.global_batch(idx)
            features = self.stored_features[batch.to(self.stored_features.device)].to(batch.device, non_blocking=True)
        else:
            features = dist.split_forward(self._features, x)
        norm = self.cfg.loss_norm
        meta = self.meta_batches.next()
        x_meta, y_meta = self.splits.x_val[meta], self.splits.y_val[meta]

        def inner(forward) -> Tensor:
            p = torch.softmax(forward(x)[0], dim=1)
            return soft_label_kl(p, torch.softmax(self.slp(features), dim=1), norm=norm)

        def meta_loss(forward) -> Tensor:
            return nn.functional.cross_entropy(forward(x_meta)[0], y_meta)

        self.maybe_meta_update(inner, meta_loss, lr=self.inner_step, outputs=(logits, embedding))
        with torch.no_grad():
            soft = torch.softmax(self.slp(features[mine]), dim=1)
        p = torch.softmax(logits, dim=1)
        rows = len(x)
        loss = soft_label_kl(p, soft, norm=norm, rows=rows) + self.cfg.entropy_weight * entropy(p, norm=norm, rows=rows)
        return dist.batch_share(loss), logits
