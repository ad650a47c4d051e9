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

ROOT = Path(__file__).resolve().parents[3]
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


def test_misspelt_setting_names_what_it_may_have_meant(shipped_raw):
    assert _error(_with(shipped_raw, "stage2.mwnet.meta_lrr", 0.01)) == (
        "params.yaml: stage2.mwnet.meta_lrr: unknown key (did you mean 'meta_lr'?)")
    assert _error(_with(shipped_raw, "stage2.ido.meta_lr", 0.01)) == (
        "params.yaml: stage2.ido.meta_lr: unknown key; stage2.ido has bmm_scope, out_of_range, sort_components, "
        "degenerate_fallback, em_iters_init, em_iters_epoch, entropy_confidence_weight")
    assert _error(_with(shipped_raw, "trainig", {})) == "params.yaml: trainig: unknown key"  # a section: no guess


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


def test_load_params_empty_file_is_an_error(tmp_path):
    """An empty (or comments-only) params.yaml would silently mean every code default."""
    path = tmp_path / "params.yaml"
    for text in ("", "# all commented out\n", "{}\n"):
        path.write_text(text)
        with pytest.raises(LnlError) as info:
            load_params(path)
        assert str(info.value).startswith(f"{path} is empty:")


def _load(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def _load_error(tmp_path, text: str) -> str:
    with pytest.raises(LnlError) as info:
        _load(tmp_path, text)
    return str(info.value).removeprefix(f"{tmp_path / 'params.yaml'}: ")


def test_unknown_top_level_key_in_file(tmp_path):
    assert _load_error(tmp_path, SHIPPED.read_text() + "trainig:\n  epochs: 3\n") == "trainig: unknown key"


def test_quoted_number_is_not_a_number(tmp_path):
    text = SHIPPED.read_text().replace("stage1:\n  epochs: 20\n", 'stage1:\n  epochs: "3"\n')
    assert _load_error(tmp_path, text) == "stage1.epochs: expected a number, not the string '3'"


def test_boolean_is_not_a_number(tmp_path):
    text = SHIPPED.read_text().replace("checkpoint_every: 1", "checkpoint_every: true")
    assert _load_error(tmp_path, text) == "runtime.checkpoint_every: expected a number, not the boolean true"


@pytest.mark.parametrize("dotted, value, expected", [
    ("noise.rate", "0.2", "noise.rate: expected a number, not the string '0.2'"),
    ("stage2.meta.interval", False, "stage2.meta.interval: expected a number, not the boolean false"),
    ("compare.seeds", [0, "1"], "compare.seeds: expected a number, not the string '1'"),
    ("stage2.coteaching.forget_rate", "0.3",
     "stage2.coteaching.forget_rate: expected a number or one of noise_rate, estimate, not the string '0.3'"),
    ("model.normalize", {"mean": ["0.5"], "std": [0.2]}, "model.normalize: mean: expected a number, not the string '0.5'"),
])
def test_strings_and_booleans_are_not_numbers(shipped_raw, dotted, value, expected):
    assert _error(_with(shipped_raw, dotted, value)) == f"params.yaml: {expected}"


def test_numeric_fields_still_take_numbers_and_their_words(shipped_raw):
    params = validate_params(_with(_with(shipped_raw, "stage1.lr", 1), "stage2.coteaching.forget_rate", "estimate"))
    assert params.stage1.lr == 1.0 and params.stage2.coteaching.forget_rate == "estimate"
    assert validate_params(_with(shipped_raw, "stage2.coteaching.forget_rate", 0.25)).stage2.coteaching.forget_rate == 0.25


def test_yaml_is_read_as_dvc_reads_it(tmp_path):
    """YAML 1.2 (ruamel, as DVC): 1e-3 is a float (PyYAML's YAML 1.1 reads a string), `off` is a string."""
    text = SHIPPED.read_text().replace("  lr: 0.001\n  weight_decay", "  lr: 1e-3\n  weight_decay", 1)
    text = text.replace("amp: auto", "amp: off")
    assert "lr: 1e-3" in text and yaml.safe_load(text)["stage1"]["lr"] == "1e-3"
    params = _load(tmp_path, text)
    assert params.stage1.lr == 0.001 and params.runtime.amp == "off"


def test_lists_still_fill_tuples_and_lists(tmp_path):
    text = SHIPPED.read_text().replace("source: digits", "source: image_folder").replace("  root: null", "  root: imgs")
    text = text.replace("labels_csv: null", "labels_csv: labels.csv").replace("classes: null", "classes: [cat, dog]")
    text = text.replace("normalize: none", "normalize: {mean: [0.5], std: [0.25]}")
    params = _load(tmp_path, text)
    assert params.data.classes == ("cat", "dog") and params.model.normalize.mean == [0.5]
    assert params.compare.seeds == [0, 1, 2]


def test_repeated_key_is_one_line(tmp_path):
    message = _load_error(tmp_path, SHIPPED.read_text() + "data:\n  seed: 1\n")
    assert message.startswith("not valid YAML at line ") and 'duplicate key "data"' in message
    assert "\n" not in message


def test_missing_compare_section_means_no_runs(shipped_raw):
    raw = {k: v for k, v in shipped_raw.items() if k != "compare"}
    assert validate_params(raw).compare.runs == {}


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
