"""Tests for components.config: the params.yaml schema, its error messages, and its import cost."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from components.config import METHOD_NAMES, Params, dump_params, load_params, validate_params
from components.errors import LnlError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def shipped_raw() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def _with(raw: dict, dotted: str, value) -> dict:
    """A deep copy of `raw` with `dotted` (e.g. 'stage2.ido.foo') set to `value`."""
    out = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


def _error(raw) -> str:
    with pytest.raises(LnlError) as info:
        validate_params(raw, source="params.yaml")
    return str(info.value)


# --- the shipped file ----------------------------------------------------------------------------------


def test_shipped_params_validate():
    params = load_params(SHIPPED)
    assert isinstance(params, Params)
    assert params.data.source == "digits"
    assert params.stage2.method in METHOD_NAMES


@pytest.mark.parametrize("section", ["data", "noise", "model", "augment", "stage1", "stage2", "evaluate"])
def test_defaults_match_shipped_file(section):
    """Where the shipped file repeats a default, both agree (a drift in either is caught here)."""
    assert getattr(Params(), section) == getattr(load_params(SHIPPED), section)


def test_some_default_values(shipped_raw):
    defaults = Params()
    assert defaults.noise.rate == shipped_raw["noise"]["rate"] == 0.4
    assert defaults.stage1.epochs == shipped_raw["stage1"]["epochs"]
    assert defaults.stage2.ido.bmm_scope == shipped_raw["stage2"]["ido"]["bmm_scope"]
    assert defaults.schedule.cron == shipped_raw["schedule"]["cron"]


def test_empty_and_none_give_defaults():
    assert validate_params(None) == Params()
    assert validate_params({}) == Params()


def test_dump_params_round_trips():
    params = load_params(SHIPPED)
    assert validate_params(yaml.safe_load(dump_params(params))) == params


# --- invalid configs: one LnlError naming the field ---------------------------------------------------------


def test_unknown_top_level_key(shipped_raw):
    message = _error(_with(shipped_raw, "trainig", {"epochs": 3}))
    assert "trainig" in message and "unknown key" in message
    assert message.startswith("params.yaml:")


def test_unknown_nested_key(shipped_raw):
    message = _error(_with(shipped_raw, "stage2.ido.foo", 1))
    assert "stage2.ido.foo" in message and "unknown key" in message


def test_wrong_type(shipped_raw):
    message = _error(_with(shipped_raw, "stage1.epochs", "ten"))
    assert "stage1.epochs" in message
    assert "'ten'" in message


@pytest.mark.parametrize("rate", [1.0, -0.1])
def test_noise_rate_out_of_range(shipped_raw, rate):
    message = _error(_with(shipped_raw, "noise.rate", rate))
    assert "noise.rate" in message
    assert repr(rate) in message


def test_noise_rate_zero_is_allowed(shipped_raw):
    assert validate_params(_with(shipped_raw, "noise.rate", 0.0)).noise.rate == 0.0


def test_unknown_method_lists_valid_ones(shipped_raw):
    message = _error(_with(shipped_raw, "stage2.method", "mentornet"))
    assert "stage2.method" in message and "mentornet" in message
    for name in METHOD_NAMES:
        assert name in message


def test_unknown_data_source(shipped_raw):
    message = _error(_with(shipped_raw, "data.source", "hdf5"))
    assert "data.source" in message and "hdf5" in message


@pytest.mark.parametrize("source", ["npz", "csv"])
def test_file_source_needs_path(shipped_raw, source):
    raw = _with(_with(shipped_raw, "data.source", source), "data.path", None)
    message = _error(raw)
    assert "data.path" in message and source in message


def test_file_source_with_path_is_valid(shipped_raw):
    raw = _with(_with(shipped_raw, "data.source", "npz"), "data.path", "data/raw/x.npz")
    assert validate_params(raw).data.path == "data/raw/x.npz"


def test_classmap_needs_class_map(shipped_raw):
    raw = _with(_with(shipped_raw, "noise.kind", "classmap"), "noise.class_map", None)
    message = _error(raw)
    assert "noise.class_map" in message


def test_classmap_accepts_named_or_explicit_map(shipped_raw):
    raw = _with(shipped_raw, "noise.kind", "classmap")
    assert validate_params(_with(raw, "noise.class_map", "mnist")).noise.class_map == "mnist"
    assert validate_params(_with(raw, "noise.class_map", {1: 7, 7: 1})).noise.class_map == {1: 7, 7: 1}


@pytest.mark.parametrize("cron", ["0 3 * *", "every night", "0 3 * * * *"])
def test_bad_cron(shipped_raw, cron):
    message = _error(_with(shipped_raw, "schedule.cron", cron))
    assert "schedule.cron" in message and "5 fields" in message


def test_fractions_must_leave_training_data(shipped_raw):
    raw = _with(_with(shipped_raw, "data.val_fraction", 0.5), "data.test_fraction", 0.45)
    message = _error(raw)
    assert "data" in message and "training" in message


def test_several_errors_in_one_message(shipped_raw):
    raw = _with(_with(shipped_raw, "noise.rate", 2.0), "stage1.lr", -1)
    message = _error(raw)
    assert "noise.rate" in message and "stage1.lr" in message


def test_non_mapping_is_rejected():
    with pytest.raises(LnlError, match="expected a mapping"):
        validate_params(["data", "noise"])


# --- load_params ----------------------------------------------------------------------------------------------


def test_load_params_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(LnlError, match="file not found") as info:
        load_params(missing)
    assert str(missing) in str(info.value)


def test_load_params_invalid_yaml(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\nnoise: {rate: 0.2\n")
    with pytest.raises(LnlError, match="not valid YAML") as info:
        load_params(bad)
    assert str(bad) in str(info.value)


def test_load_params_names_the_file_in_validation_errors(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("noise:\n  rate: 1.5\n")
    with pytest.raises(LnlError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}:")
    assert "noise.rate" in str(info.value)


# --- immutability and the method registry -------------------------------------------------------------------


def test_models_are_frozen():
    params = load_params(SHIPPED)
    with pytest.raises(ValidationError):
        params.noise.rate = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        params.stage2.ido.bmm_scope = "global"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        params.stage1 = params.stage1  # type: ignore[misc]
    assert params.noise.rate == 0.4


def test_method_names_match_registry():
    from components.methods import REGISTRY

    assert tuple(METHOD_NAMES) == tuple(REGISTRY)


# --- import cost ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["components.config", "components.noise", "components.stages.noise"])
def test_module_does_not_import_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
