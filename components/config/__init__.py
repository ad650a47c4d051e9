"""The schema of `params.yaml`: frozen pydantic models that forbid unknown keys.

Every stage and the Prefect flow call `load_params()` first, so a bad value stops the run before any work with
one message naming the field. Importing this package is cheap (no torch, no numpy).

Modules: `section` (the base of every section), `data` (data, noise), `model` (model, augment, runtime), `optim`
(optimiser, schedules, stage1), `stage2` (the method and its settings), `params` (the whole file: compare,
evaluate, schedule), `load` (read, validate, dump, error messages).
"""

from __future__ import annotations

from components.config.data import (
    DATA_SOURCES,
    DECODED_SOURCES,
    NOISE_KINDS,
    PATH_SOURCES,
    REAL_NOISE,
    ROOT_SOURCES,
    DataParams,
    NoiseParams,
)
from components.config.load import (
    UNTRUSTED_SOURCES,
    dump_params,
    format_validation_error,
    load_params,
    read_yaml,
    untrusted_meta_set,
    validate_params,
)
from components.config.model import (
    FIXED_ARCHS,
    MODEL_ARCHS,
    AugmentParams,
    ModelParams,
    NormalizeStats,
    RandAugmentParams,
    RuntimeParams,
)
from components.config.optim import (
    CosineScheduleParams,
    LrScheduleParams,
    OptimizerParams,
    OptimParams,
    Stage1Params,
)
from components.config.params import CompareParams, EvaluateParams, Params, ScheduleParams
from components.config.section import Section
from components.config.stage2 import (
    METHOD_NAMES,
    METHOD_SECTIONS,
    TRUSTED_SPLIT_METHODS,
    SelectionParams,
    Stage2Params,
)
from components.config_mlflow import TrackingParams

__all__ = [
    "DATA_SOURCES", "DECODED_SOURCES", "FIXED_ARCHS", "METHOD_NAMES", "METHOD_SECTIONS", "MODEL_ARCHS", "NOISE_KINDS",
    "PATH_SOURCES", "REAL_NOISE", "ROOT_SOURCES", "TRUSTED_SPLIT_METHODS", "UNTRUSTED_SOURCES",
    "AugmentParams", "CompareParams", "CosineScheduleParams", "DataParams", "EvaluateParams", "LrScheduleParams",
    "ModelParams", "NoiseParams", "NormalizeStats", "OptimParams", "OptimizerParams", "Params", "RandAugmentParams",
    "RuntimeParams", "ScheduleParams", "Section", "SelectionParams", "Stage1Params", "Stage2Params", "TrackingParams",
    "dump_params", "format_validation_error", "load_params", "read_yaml", "untrusted_meta_set", "validate_params",
]
