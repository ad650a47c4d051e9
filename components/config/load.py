"""Reading, validating and writing params.yaml, with one error line naming every bad field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from components.config.params import Params
from components.config.stage2 import TRUSTED_SPLIT_METHODS
from components.config_mlflow import LIMIT_ERROR
from components.errors import LnlError
from components.noise_limits import params_noise_problem


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys of the section holding `loc`'s last key (None where that is not a plain section)."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return list(model.model_fields)


def _unknown_key(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """'unknown key', and inside a section the likely intended key or the section's keys (a misspelt setting)."""
    keys = _known_keys(model, loc) if len(loc) > 1 else None
    if not keys:
        return "unknown key"
    near = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    where = ".".join(map(str, loc[:-1]))
    return f"unknown key (did you mean '{near[0]}'?)" if near else f"unknown key; {where} has {', '.join(keys)}"


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """One readable message naming every bad field, e.g. `params.yaml: noise.rate: ... (got 1.5)`; `model` is
    what was validated (default: Params), for the keys an unknown key may have meant."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = _unknown_key(item["loc"], model or Params)
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
