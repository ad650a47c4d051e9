"""params.yaml `stage2`: the robust method, its own settings, and the recipe shared by every method."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.config.optim import CosineScheduleParams, OptimParams
from components.config.section import Section

METHOD_NAMES = ("ce", "ido", "metalabelnet", "clidmu", "mwnet", "gce", "sce", "elr", "coteaching", "dividemix")  # keep in step with components.methods.REGISTRY (a test checks this)
TRUSTED_SPLIT_METHODS = ("metalabelnet", "mwnet")  # their meta loss reads the validation split's labels


class IdoParams(Section):
    """IDO options (specs/ido.md §11); defaults are the recommended ones, parity values reachable."""

    bmm_scope: Literal["class", "global"] = "class"
    out_of_range: Literal["clip", "zero"] = "clip"
    sort_components: bool = True
    degenerate_fallback: Literal["global", "none"] = "global"
    em_iters_init: int = Field(20, ge=1)
    em_iters_epoch: int | None = Field(None, ge=1, description="default: 2 (class) or 1 (global)")
    entropy_confidence_weight: bool = False


class MetaParams(Section):
    """Shared one-step look-ahead settings of the meta-learning methods (metalabelnet, clidmu, mwnet)."""

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
    meta_batch_size: int = Field(100, ge=2)


class MetaLabelNetParams(Section):
    """MetaLabelNet (specs/metalabelnet.md §8); the meta set is the trusted validation split."""

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
    slp_init: Literal["default", "from_head"] = "from_head"
    warmup_end: Literal["last", "base"] = Field(
        "last", description="the warm-up's end (classifier start and frozen encoder): last = stage one's final "
        "epoch (the paper's fixed-length warm-up) | base = stage one's base model (label wave)",
    )

    def inner_step(self, shared: float | None) -> float:
        """The virtual step: alpha_inner or stage2.meta.inner_lr (whichever is set; they must agree), else 1."""
        return self.alpha_inner if self.alpha_inner is not None else shared if shared is not None else 1.0


class ClidMuParams(Section):
    """CLID-MU (specs/clidmu.md §12): label-free meta loss on a fixed random subset of training images."""

    host: Literal["vri", "wnet"] = "wnet"
    meta_set_size: int = Field(1000, ge=2, description="training images whose labels are never read")
    tau: float = Field(0.5, gt=0)
    meta_optimizer: Literal["adam", "sgd"] = "adam"
    meta_lr: float | None = Field(None, gt=0, description="default: 0.01 (vri), 1e-3 (wnet)")
    meta_weight_decay: float = Field(5e-4, ge=0)
    vri_use_kl: bool = Field(False, description="the official KL term has no gradient path to the classifier")
    vri_kl_weight: float = Field(0.01, ge=0)
    wnet_normalize_weights: bool = True
    aug: Literal["standard", "strong_all"] = Field("standard", description="strong_all = the official RandAugment view for every image")


class MwnetParams(Section):
    """MW-Net: the weighting-net host with cross-entropy on the trusted validation split as the meta loss."""

    meta_optimizer: Literal["adam", "sgd"] = "adam"
    meta_lr: float = Field(1e-3, gt=0)
    meta_weight_decay: float = Field(1e-4, ge=0, description="official VNet: Adam 1e-3, wd 1e-4")
    normalize_weights: bool = Field(
        True, description="Σ v·ℓ / Σ v (the default: see docs/methods/mwnet.md's ablation); false = the official "
        "script's mean of v·ℓ, which pairs with its SGD recipe (lr 0.1)")


class GceParams(Section):
    """Truncated GCE (specs/baselines.md): q, truncation threshold k, pruning schedule.

    The reference prunes after epoch 40 of 120, then every 10: null keeps those fractions of stage2.epochs
    (a third, then every twelfth); numbers are epochs (40 / 10 = the reference at 120 epochs).
    """

    q: float = Field(0.7, gt=0, le=1)
    k: float = Field(0.5, gt=0, lt=1)
    truncated: bool = True
    prune_start: int | None = Field(None, ge=1, description="first epoch after which weights are recomputed; "
                                    "null = round(epochs / 3)")
    prune_every: int | None = Field(None, ge=1, description="epochs between prunings; null = round(epochs / 12)")

    def schedule(self, epochs: int) -> tuple[int, int]:
        """(prune_start, prune_every) for `epochs` stage-two epochs."""
        start = self.prune_start if self.prune_start is not None else max(1, round(epochs * 40 / 120))
        every = self.prune_every if self.prune_every is not None else max(1, round(epochs * 10 / 120))
        return start, every


class SceParams(Section):
    """Symmetric CE (specs/baselines.md): CIFAR-10 setting α = 0.1, β = 1, one-hot clamped at 1e-4."""

    alpha: float = Field(0.1, ge=0)
    beta: float = Field(1.0, ge=0)
    rce_log_floor: float = Field(1e-4, gt=0, lt=1)


class ElrParams(Section):
    """ELR (specs/baselines.md): CIFAR-10 setting λ = 3, β = 0.7."""

    lam: float = Field(3.0, ge=0)
    beta: float = Field(0.7, ge=0, lt=1)


class CoteachingParams(Section):
    """Co-teaching (specs/baselines.md): two networks, each trained on its peer's small-loss selection."""

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


class DivideMixParams(Section):
    """DivideMix (specs/baselines.md): GMM co-divide + MixMatch; stage one is the warm-up."""

    p_threshold: float = Field(0.5, gt=0, lt=1, description="clean probability above which a sample is labelled")
    temperature: float = Field(0.5, gt=0, description="sharpening temperature T")
    alpha: float = Field(4.0, gt=0, description="MixMatch Beta(α, α)")
    lambda_u: float | None = Field(None, ge=0, description="unlabelled loss weight; null = the per-setting preset")
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


class SelectionParams(Section):
    """Label-free checkpoint selection: lowest mean CLID on unlabelled training images (every method)."""

    enabled: bool = True
    k: int = Field(5, ge=1, description="ensemble of the k lowest-CLID epochs (sum of test logits)")
    pool_size: int = Field(1000, ge=2)
    tau: float = Field(0.5, gt=0)
    transform: Literal["test", "train_strong"] = Field("test", description="train_strong = official parity")


class Stage2Params(OptimParams):
    """Stage two: a robust method from the registry, starting from stage one's base model."""

    method: str = "ido"
    epochs: int = Field(30, ge=1)
    schedule: CosineScheduleParams = CosineScheduleParams()
    init: Literal["base", "scratch"] | None = Field(
        None, description="start from stage one's base model or a fresh network; null = the method's default"
    )
    ido: IdoParams = IdoParams()
    meta: MetaParams = MetaParams()
    metalabelnet: MetaLabelNetParams = MetaLabelNetParams()
    clidmu: ClidMuParams = ClidMuParams()
    mwnet: MwnetParams = MwnetParams()
    gce: GceParams = GceParams()
    sce: SceParams = SceParams()
    elr: ElrParams = ElrParams()
    coteaching: CoteachingParams = CoteachingParams()
    dividemix: DivideMixParams = DivideMixParams()
    selection: SelectionParams = SelectionParams()

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHOD_NAMES:
            raise ValueError(f"unknown method '{value}'; choose one of {', '.join(METHOD_NAMES)}")
        return value

    @model_validator(mode="after")
    def _method_schedules(self) -> Stage2Params:
        """Settings of the chosen method that contradict the shared ones or would never take effect."""
        mln, shared = self.metalabelnet.alpha_inner, self.meta.inner_lr
        if self.method == "metalabelnet" and mln is not None and shared is not None and mln != shared:
            raise ValueError(f"metalabelnet.alpha_inner ({mln}) and meta.inner_lr ({shared}) both set the virtual "
                             "step; set one of them (or both to the same value)")
        start = self.gce.schedule(self.epochs)[0]
        if self.method == "gce" and self.gce.truncated and start >= self.epochs:
            raise ValueError(f"gce.prune_start {start} is not below epochs {self.epochs}: truncation would never "
                             "happen; lower it, set null (a third of the epochs) or truncated: false")
        return self
