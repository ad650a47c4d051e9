"""params.yaml `tracking`: the MLflow experiment and registered-model names, held to MLflow's own limits when
params.yaml is read, not after the training when MLflow would refuse them.

The limits are the installed MLflow's: `mlflow.utils.validation` (MAX_EXPERIMENT_NAME_LENGTH = 500;
`_validate_model_name`: no '/' or ':', and no name that reads as a path, such as '.', '..' or '..x') and its SQL
schema (`registered_models.name` is a VARCHAR(256)). tests/unit/test_config_mlflow.py compares them with the
installed package; importing MLflow here would cost seconds on every read of params.yaml.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

MAX_EXPERIMENT_NAME = 500
MAX_MODEL_NAME = 256
LIMIT_ERROR = "mlflow_limit"  # an error type whose message says it all (the params error line omits the value)


def _within(value: str, limit: int, what: str) -> str:
    if not value.strip():
        raise PydanticCustomError(LIMIT_ERROR, f"empty; MLflow needs {what}")
    if len(value) > limit:
        raise PydanticCustomError(LIMIT_ERROR, f"{len(value)} characters; MLflow allows at most {limit} in {what}")
    return value


class TrackingParams(BaseModel):
    """MLflow experiment and registered-model names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str = "lnlflow"
    model_name: str = Field("lnlflow-digits", pattern=r"^[A-Za-z0-9_.\-]+$")

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str) -> str:
        return _within(value, MAX_EXPERIMENT_NAME, "an experiment name")

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if value == "." or value.startswith(".."):
            raise PydanticCustomError(LIMIT_ERROR, f"{value!r} reads as a path, which MLflow refuses as a model name")
        return _within(value, MAX_MODEL_NAME, "a registered model name")
