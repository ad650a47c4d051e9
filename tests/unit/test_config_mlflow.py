"""tracking.experiment / tracking.model_name are held to the installed MLflow's limits when params.yaml is read."""

from __future__ import annotations

import pytest

from components.config import validate_params
from components.config_mlflow import MAX_EXPERIMENT_NAME, MAX_MODEL_NAME
from components.errors import LnlError


def test_the_limits_are_the_installed_mlflows():
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModel
    from mlflow.utils import validation

    assert MAX_EXPERIMENT_NAME == validation.MAX_EXPERIMENT_NAME_LENGTH
    assert MAX_MODEL_NAME == SqlRegisteredModel.__table__.c.name.type.length
    for name in (".", "..", "..x", "a..b", "a.b", "x-1_2"):  # names the params pattern admits
        refused = validation.path_not_unique(name)
        try:
            validate_params({"tracking": {"model_name": name}})
            accepted = True
        except LnlError:
            accepted = False
        assert accepted != refused, name


@pytest.mark.parametrize(("tracking", "line"), [
    ({"experiment": "e" * 600}, "tracking.experiment: 600 characters; MLflow allows at most 500 in an experiment name"),
    ({"experiment": " "}, "tracking.experiment: empty; MLflow needs an experiment name"),
    ({"model_name": "m" * 257}, "tracking.model_name: 257 characters; MLflow allows at most 256 in a registered model "
                                "name"),
    ({"model_name": ".."}, "tracking.model_name: '..' reads as a path, which MLflow refuses as a model name"),
])
def test_names_mlflow_would_refuse_are_one_line(tracking, line):
    with pytest.raises(LnlError) as error:
        validate_params({"tracking": tracking}, source="params.yaml")
    assert str(error.value) == f"params.yaml: {line}"
    validate_params({"tracking": {"experiment": "e" * 500, "model_name": "m" * 256}})
