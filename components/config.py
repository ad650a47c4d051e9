"""The schema of `params.yaml`: frozen pydantic models that forbid unknown keys.

Every stage and the Prefect flow call `load_params()` first, so a bad value stops the run before any
work with one message naming the field. Importing this module is cheap (no torch, no numpy).
"""

from __future__ import annotations

import functools
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from components.config_mlflow import LIMIT_ERROR, TrackingParams
from components.errors import LnlError
from components.noise_limits import params_noise_problem

NOISE_KINDS = (
    "none",
    "symmetric_exclusive",
    "symmetric_inclusive",
    "symmetric_inclusive_per_sample",
    "symmetric_exclusive_exact",
    "pairflip",
    "classmap",
    "instance",
)  # synthetic kinds (components.noise generators); `real` (below) reads labels that came with the data
REAL_NOISE = "real"
DATA_SOURCES = (
    "digits", "npz", "csv", "npy", "cifar10", "cifar100", "mnist", "fashion_mnist", "image_folder",
    "clothing1m", "mini_webvision", "animal10n", "food101n",
)
PATH_SOURCES = ("npz", "csv", "npy")  # read from data.path (a file; npy: a folder of .npy arrays)
ROOT_SOURCES = DATA_SOURCES[4:]  # every source read from a folder (data.root)
DECODED_SOURCES = ("clothing1m", "mini_webvision", "animal10n", "food101n")  # large photo sets: need data.image_size
METHOD_NAMES = ("ce", "ido", "metalabelnet", "clidmu", "mwnet", "gce", "sce", "elr", "coteaching", "dividemix")  # keep in step with components.methods.REGISTRY (a test checks this)


@functools.cache
def _accepts(annotation: Any) -> tuple[bool, bool, tuple[str, ...], Any]:
    """What a field type takes: (a number, any string, the allowed literal strings, the item type of a list/tuple)."""
    number, string, literals, item = False, False, (), None
    for arg in get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,):
        origin = get_origin(arg)
        if arg in (int, float):
            number = True
        elif arg is str:
            string = True
        elif origin is Literal:
            literals += tuple(v for v in get_args(arg) if isinstance(v, str))
        elif origin in (list, tuple) and get_args(arg):
            item = get_args(arg)[0]
    return number, string, literals, item


def _not_a_number(value: Any, annotation: Any) -> str | None:
    """Why `value` must not be coerced into the number `annotation` wants ('3' or true for an int), else None."""
    number, string, literals, item = _accepts(annotation)
    if isinstance(value, (list, tuple)) and item is not None:
        return next((p for p in (_not_a_number(v, item) for v in value) if p), None)
    if not number or string or (isinstance(value, str) and value in literals):
        return None
    expected = "a number" + (f" or one of {', '.join(literals)}" if literals else "")
    if isinstance(value, bool):
        return f"expected {expected}, not the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"expected {expected}, not the string {value!r}"
    return None


class Section(BaseModel):
    """Base of every params section: immutable, strict about unknown keys and about numbers (a quoted '3' or a
    boolean is not taken for one; YAML 1.2's 1e-3 is a float, see load_params)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        problem = _not_a_number(value, cls.model_fields[info.field_name].annotation)
        if problem:
            raise PydanticCustomError("not_a_number", problem)
        return value


class DataParams(Section):
    """Where the data comes from and how it is split."""

    source: Literal[DATA_SOURCES] = "digits"  # type: ignore[valid-type]
    path: str | None = Field(None, description="npz/csv file (required for those sources)")
    label_column: str = Field("label", description="csv: the column holding the class label")
    root: str | None = Field(None, description="folder of a benchmark or image source (required for those)")
    download: bool = Field(False, description="cifar10/cifar100: fetch the official archive into root if absent")
    image_size: int | None = Field(None, ge=4, description="decoded images are resized to this square side")
    keep_encoded: bool = Field(False, description="photo sources: keep the files encoded and decode each batch in "
                               "worker processes, a seeded random-resized crop of image_size for training, resize + "
                               "centre crop otherwise (the 224-px recipe); false: decode once into the store")
    labels_csv: str | None = Field(None, description="image_folder: CSV file,label[,trusted][,clean] for a flat folder")
    classes: tuple[str, ...] | None = Field(None, description="labels_csv: the class list, in label order; a label "
                                            "or clean value outside it is an error (default: the labels found)")
    food101_root: str | None = Field(None, description="food101n: the Food-101 folder (meta/test.txt, images/)")
    corrections: str | None = Field(None, description="CSV source_row,label[,trusted] or file,label[,trusted]: "
                                    "reviewed labels that replace the training labels (README: Reviewing labels)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="trusted validation split, stratified; 0 = none "
                                "(all non-test rows train; model selection falls back to label-free or the last epoch)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="ignored by sources with an official test set")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        source = self.source
        if source in PATH_SOURCES and not self.path:
            raise ValueError(f"source '{source}' needs data.path")
        if source in ROOT_SOURCES and not self.root:
            raise ValueError(f"source '{source}' needs data.root (the dataset's folder)")
        if self.keep_encoded and self.image_size is None:
            raise ValueError("data.keep_encoded needs data.image_size: the side of the crops batches are decoded at")
        if source in DECODED_SOURCES and self.image_size is None:
            raise ValueError(f"source '{source}' needs data.image_size (e.g. 32 or 64): its photos are decoded into one array")
        misplaced = [
            name for name, allowed in (
                ("path", PATH_SOURCES), ("root", ROOT_SOURCES), ("download", ("cifar10", "cifar100")),
                ("image_size", ("image_folder", *DECODED_SOURCES)), ("keep_encoded", ("image_folder", *DECODED_SOURCES)),
                ("labels_csv", ("image_folder",)),
                ("classes", ("image_folder",)),
                ("food101_root", ("food101n",)),
            )
            if getattr(self, name) not in (None, False) and source not in allowed
        ]
        if misplaced:
            raise ValueError(f"{', '.join('data.' + m for m in misplaced)} not used by source '{source}' (remove or set to null)")
        if self.classes is not None:
            if not self.labels_csv:
                raise ValueError("data.classes lists the classes of data.labels_csv; set labels_csv or remove classes")
            repeated = sorted({c for c in self.classes if self.classes.count(c) > 1})
            if len(self.classes) < 2 or repeated or not all(c.strip() for c in self.classes):
                raise ValueError("data.classes must name at least 2 distinct, non-empty classes"
                                 + (f" (repeated: {', '.join(repeated)})" if repeated else ""))
        if source == "food101n" and not self.food101_root:
            raise ValueError("source 'food101n' needs data.food101_root (Food-101, whose test split is the test set)")
        return self


class NoiseParams(Section):
    """Synthetic label noise injected into the training split (see specs/noise.md)."""

    kind: Literal[(*NOISE_KINDS, REAL_NOISE)] = "symmetric_exclusive"  # type: ignore[valid-type]
    rate: float = Field(0.4, ge=0, lt=1)
    sampling: Literal["exact", "per_sample"] = Field("exact", description="pairflip/classmap only")
    class_map: str | dict[int, int] | None = Field(
        None, description="classmap: a named map (cifar10, mnist, cifar100, cifar100_superclass) or {source: target}"
    )
    idn_norm_std: float = Field(0.1, gt=0)
    idn_pixel_scale: Literal["raw", "unit"] = Field("raw", description="instance: raw pixel values or [0,1]")
    val_labels: Literal["clean", "noisy"] = Field("clean", description="clean = a trusted validation split")
    label_file: str | None = Field(None, description="real: CIFAR-10_human.pt / CIFAR-100_human.pt (CIFAR-N)")
    label_set: str | None = Field(None, description="real + label_file: aggre, random1-3, worst (CIFAR-10N) or noisy (CIFAR-100N)")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> NoiseParams:
        if self.kind == "classmap" and self.class_map is None:
            raise ValueError("kind 'classmap' needs noise.class_map")
        if self.kind != REAL_NOISE and (self.label_file or self.label_set):
            raise ValueError("noise.label_file / noise.label_set are only read by kind 'real'")
        if self.label_file and not self.label_set:
            raise ValueError("noise.label_file needs noise.label_set (e.g. aggre, worst, noisy)")
        if self.label_set and not self.label_file:
            raise ValueError("noise.label_set needs noise.label_file (the CIFAR-N .pt file)")
        return self


FIXED_ARCHS = ("cnn8_mln", "cnn9_coteaching", "wrn28_10")  # the papers' networks, widths fixed (components.models.paper_nets)
MODEL_ARCHS = ("mlp", "cnn", "preact_resnet18", "resnet34", *FIXED_ARCHS)  # plus timm:<name> / torchvision:<name> (optional extra)


class NormalizeStats(Section):
    """Fixed per-channel input statistics, in [0, 1] pixel units (e.g. ImageNet's for a pretrained backbone)."""

    mean: list[float] = Field(..., min_length=1)
    std: list[float] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _check(self) -> NormalizeStats:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError("every std must be positive")
        return self


class ModelParams(Section):
    """The classifier; every architecture returns (logits, penultimate embedding)."""

    arch: str = Field("cnn", description="mlp | cnn | preact_resnet18 | resnet34 | cnn8_mln | cnn9_coteaching | wrn28_10 "
                                        "| timm:<name> | torchvision:<name>")
    hidden: int = Field(256, ge=2, description="mlp: hidden width")
    width: int | None = Field(None, ge=1, description="channels of the first stage; null = standard (cnn 32, ResNets 64)")
    dropout: float = Field(0.0, ge=0, lt=1)
    normalize: Literal["none", "train"] | NormalizeStats = Field(
        "none", description="per-channel (x − mean)/std after uint8 → [0, 1]: none, train (training-split statistics) or {mean, std}"
    )
    weights: str | None = Field(None, description="stage one starts from this local state_dict file (strict shape check)")

    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("none", "train"):
            raise ValueError("expected none, train or {mean: [...], std: [...]}")
        if isinstance(value, dict):
            try:
                return NormalizeStats.model_validate(value)
            except ValidationError as error:
                parts = [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in error.errors()]
                raise ValueError("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in parts)) from None
        return value

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value in MODEL_ARCHS or re.fullmatch(r"(timm|torchvision):[A-Za-z0-9_.\-]+", value):
            return value
        raise ValueError(f"unknown architecture '{value}'; choose one of {', '.join(MODEL_ARCHS)}, timm:<name> or torchvision:<name>")

    @model_validator(mode="after")
    def _fixed_width(self) -> ModelParams:
        if self.arch in FIXED_ARCHS and self.width is not None:
            raise ValueError(f"model.width is not used by '{self.arch}' (the paper's widths are fixed); set it to null")
        return self


class RandAugmentParams(Section):
    """The papers' RandAugment(n, m): n ops drawn from the pool, each applied with p = 0.5 at a level drawn from
    [1, m), then an always-on grey cutout. Pools: fixmatch = FixMatch's RandAugmentMC, 14 ops (CLID-MU's strong
    view); ido = IDO's RandAugmentwogeo, 16 ops (components/training/randaugment.py, docs/methods/ido.md)."""

    pool: Literal["fixmatch", "ido"] = Field(
        "fixmatch", description="op pool: fixmatch (14 ops, factors 0.05-0.95, translate/shear 0.3) or ido (16 ops "
        "with cutout, invert and solarize_add; factors 0.1-1.9, translate 0.05, shear 0.1)")
    n: int = Field(2, ge=1, description="ops per image, drawn with replacement")
    m: int = Field(10, ge=2, le=10, description="levels are drawn uniformly from 1 .. m − 1 (of 10)")
    cutout: float = Field(0.5, ge=0, lt=1, description="grey square side / image side (0.5 = 16 px at 32); 0 = off")


class AugmentParams(Section):
    """Batched on-device augmentation. Images: shift (pad+crop), flip; the strong view is `basic` (adds jitter,
    cutout and noise) or `randaugment` (adds RandAugmentMC and a grey cutout)."""

    crop_padding: int = Field(1, ge=0)
    pad_mode: Literal["zero", "reflect"] = Field(
        "zero", description="shift padding: zero (DivideMix, MetaLabelNet; best on 8×8 digits) or reflect (CLID-MU, IDO, "
        "MW-Net CIFAR recipes)"
    )
    flip: bool = Field(False, description="horizontal flip (off for digits: it changes their meaning)")
    strong: Literal["basic", "randaugment"] = Field(
        "basic", description="strong view: basic (jitter, cutout, noise below) or randaugment (the papers' RandAugmentMC)"
    )
    randaugment: RandAugmentParams = RandAugmentParams()
    cutout: float = Field(0.25, ge=0, lt=1, description="basic strong view: side of the erased square / image side")
    noise_std: float = Field(0.05, ge=0, description="weak-view additive noise (in input units)")
    strong_noise_std: float = Field(0.15, ge=0, description="basic strong view (and vector data)")
    color_jitter: float = Field(0.0, ge=0, lt=1, description="basic strong view: brightness/contrast/saturation factors in 1 ± this")


class RuntimeParams(Section):
    """Where training runs, and the GPU speed settings (all of them do nothing on the CPU)."""

    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch's default")
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="bf16 autocast of forward passes on CUDA (auto: if supported)")
    channels_last: bool = Field(True, description="channels-last memory format for conv models on CUDA")
    compile: bool = Field(False, description="torch.compile the model on CUDA (the meta step stays eager)")
    checkpoint_every: int = Field(1, ge=0, description="write a resume checkpoint every N epochs (0 = off)")
    data_on_device: Literal["auto", "always", "never"] = Field(
        "auto", description="always: every split is read into device memory once (fastest); never: batches stream from "
        "the on-disk store with prefetching (data larger than memory); auto: in memory when it takes at most half of "
        "the free device memory (GPU) or of the available RAM (CPU)")

    @model_validator(mode="after")
    def _check(self) -> RuntimeParams:
        if self.device == "cpu" and (self.amp == "bf16" or self.compile):
            option = "amp: bf16" if self.amp == "bf16" else "compile: true"
            raise ValueError(f"{option} needs a GPU, but device is 'cpu' (use device: cuda or auto)")
        return self


class OptimizerParams(Section):
    """The classifier's optimiser (components/training/optim.py); the learning rate and weight decay are the
    stage's `lr` / `weight_decay`."""

    name: Literal["sgd", "adam", "adamw"] = Field("adamw", description="adamw: decoupled weight decay; sgd/adam: L2")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(False, description="sgd only: Nesterov momentum (needs momentum > 0)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam/adamw only: (β1, β2)")

    @model_validator(mode="after")
    def _check(self) -> OptimizerParams:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must both lie in [0, 1) (got {list(self.betas)})")
        return self


class LrScheduleParams(Section):
    """The learning-rate schedule over the stage's epochs (stepped once per epoch; warm-up per iteration)."""

    name: Literal["constant", "cosine", "multistep", "warm_restarts"] = "constant"
    t_max: int | None = Field(None, ge=1, description="cosine: epochs from lr down to lr_min; null = the stage's epochs")
    milestones: list[int] = Field(default_factory=list, description="multistep: epochs after which lr is multiplied by gamma")
    gamma: float = Field(0.1, gt=0, le=1, description="multistep: the factor")
    t_0: int = Field(10, ge=1, description="warm_restarts: epochs of the first cosine cycle")
    t_mult: int = Field(1, ge=1, description="warm_restarts: each cycle is t_mult times longer than the last")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up over the first epochs, per iteration; 0 = off")

    @model_validator(mode="after")
    def _check(self) -> LrScheduleParams:
        if self.name == "multistep" and not self.milestones:
            raise ValueError("multistep needs milestones: at least one epoch, e.g. [40, 80]")
        if any(m < 1 for m in self.milestones) or any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones must be increasing epochs ≥ 1 (got {self.milestones})")
        return self


class CosineScheduleParams(LrScheduleParams):
    """Stage two's schedule: cosine unless set otherwise."""

    name: Literal["constant", "cosine", "multistep", "warm_restarts"] = "cosine"


class OptimParams(Section):
    """Optimiser settings shared by both stages' sections."""

    epochs: int = Field(..., ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    lr_min: float = Field(1e-4, ge=0, description="floor of the cosine and warm_restarts schedules")
    weight_decay: float = Field(1e-5, ge=0)
    seed: int = Field(0, ge=0)
    optimizer: OptimizerParams = OptimizerParams()
    schedule: LrScheduleParams = LrScheduleParams()
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm before each step; null = off")

    @model_validator(mode="after")
    def _recipe(self) -> OptimParams:
        if self.schedule.warmup_epochs >= self.epochs:
            raise ValueError(f"schedule.warmup_epochs ({self.schedule.warmup_epochs}) must be below epochs ({self.epochs})")
        if self.schedule.name in ("cosine", "warm_restarts") and self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) is above lr ({self.lr}): the {self.schedule.name} schedule would raise the rate")
        return self


class Stage1Params(OptimParams):
    """Stage one: cross-entropy on the noisy labels, counting wrong events."""

    epochs: int = Field(20, ge=2)
    base_model_rule: Literal["label_wave", "label_wave_aliased", "last"] = "label_wave"


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


class CompareParams(Section):
    """Method comparison on the pipeline's cached stage one: named stage-two runs × seeds (compare/dvc.yaml)."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    runs: dict[str, dict[str, Any]] = Field(
        default_factory=dict,  # as compare/dvc.yaml sees it: no section, no runs
        description="run name → stage2 overrides (dotted keys allowed), e.g. {method: clidmu, meta.scope: head}",
    )

    @field_validator("runs")
    @classmethod
    def _valid_runs(cls, runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in runs.items():
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
                raise ValueError(f"run name '{name}' may use letters, digits, '_' and '-' only")
            method = overrides.get("method")
            if method not in METHOD_NAMES:
                raise ValueError(f"run '{name}' needs method: one of {', '.join(METHOD_NAMES)} (got {method!r})")
        return runs


class EvaluateParams(Section):
    """Evaluation and reporting."""

    threshold: float = Field(0.5, gt=0, lt=1, description="p(label wrong) above which a label is flagged")
    review_top: int = Field(200, ge=1, le=5000, description="reports/label_issues.html shows this many of the most "
                            "probably wrong unverified labels (each with its image inlined), then up to as many "
                            "verified ones")


class ScheduleParams(Section):
    """Prefect deployment schedule."""

    cron: str = "0 3 * * *"
    deployment: str = "lnlflow-nightly"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("cron must have 5 fields, e.g. '0 3 * * *'")
        return value


class Params(Section):
    """All of params.yaml."""

    data: DataParams = DataParams()
    noise: NoiseParams = NoiseParams()
    model: ModelParams = ModelParams()
    augment: AugmentParams = AugmentParams()
    runtime: RuntimeParams = RuntimeParams()
    stage1: Stage1Params = Stage1Params()
    stage2: Stage2Params = Stage2Params()
    evaluate: EvaluateParams = EvaluateParams()
    compare: CompareParams = CompareParams()
    tracking: TrackingParams = TrackingParams()
    schedule: ScheduleParams = ScheduleParams()


def format_validation_error(error: ValidationError, source: str) -> str:
    """One readable message naming every bad field, e.g. `params.yaml: noise.rate: ... (got 1.5)`."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        got = item.get("input")
        quiet = item["type"] in ("missing", "extra_forbidden", "not_a_number", LIMIT_ERROR) or isinstance(got, dict)
        shown = "" if quiet else f" (got {got!r})"
        lines.append(f"{field}: {message}{shown}")
    return f"{source}: " + "; ".join(lines)


def validate_params(raw: Any, *, source: str = "params") -> Params:
    """Validate a mapping (e.g. parsed YAML) into `Params`, raising `LnlError` with one message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise LnlError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise LnlError(format_validation_error(error, source)) from None
    if problem := untrusted_meta_set(params) or params_noise_problem(params):
        raise LnlError(f"{source}: {problem}")
    return params


TRUSTED_SPLIT_METHODS = ("metalabelnet", "mwnet")  # their meta loss reads the validation split's labels
UNTRUSTED_SOURCES = ("digits", "csv", "cifar10", "cifar100", "mnist", "fashion_mnist")  # never mark trusted rows


def untrusted_meta_set(params: Params) -> str | None:
    """Why stage2.method cannot run without a validation split (data.val_fraction 0 on a source that marks no
    trusted rows), else None; sources that may mark trusted rows are checked by stage two on the prepared data."""
    data, method = params.data, params.stage2.method
    if data.val_fraction == 0 and data.source in UNTRUSTED_SOURCES and method in TRUSTED_SPLIT_METHODS:
        return (f"stage2.method '{method}' needs a trusted validation split (its meta set), but data.val_fraction "
                f"is 0 and source '{data.source}' marks no trusted rows; set data.val_fraction > 0 or choose another method")
    return None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file as DVC does (ruamel.yaml's safe loader, YAML 1.2: `1e-3` is a float, `off` a string,
    a repeated key an error), with one error line naming the file and position."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="safe").load(path.read_text())
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(error.problem or error.context or "").split())
        raise LnlError(f"{path}: not valid YAML{where}: {problem}") from None
    except YAMLError as error:
        raise LnlError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; an empty file is an error (it would silently mean every code default)."""
    path = Path(path)
    if not path.is_file():
        raise LnlError(f"{path}: file not found (run from the project root)")
    raw = read_yaml(path)
    if raw is None or raw == {}:
        raise LnlError(f"{path} is empty: it must hold the pipeline's sections (start from the shipped params.yaml)")
    return validate_params(raw, source=str(path))


def dump_params(params: Params) -> str:
    """params.yaml text for `params` (used by the flow when a run overrides parameters)."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
