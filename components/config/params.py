"""All of params.yaml (`Params`) and its sections outside the training: compare, evaluate, schedule."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from components.config.data import DataParams, NoiseParams
from components.config.model import AugmentParams, ModelParams, RuntimeParams
from components.config.optim import Stage1Params
from components.config.section import Section
from components.config.stage2 import METHOD_NAMES, Stage2Params
from components.config_mlflow import TrackingParams


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
