"""params.yaml `model` (the classifier), `augment` (its input views) and `runtime` (where and how fast it trains)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from components.config.section import Section

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
