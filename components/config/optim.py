"""The optimiser, learning-rate schedule and training-length settings both stages share, and `stage1`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.config.section import Section


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
