"""params.yaml edits from dotted-key overrides: one line changes, everything else (bytes, mode) stays."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from components.config import Params, load_params
from components.errors import LnlError
from components.params_file import apply_overrides, flatten_params
from tests.conftest import copy_shipped_params


@pytest.fixture()
def shipped(tmp_path) -> Path:
    return copy_shipped_params(tmp_path)


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_partial_override_changes_only_its_line_and_keeps_mode(shipped):
    original = shipped.read_text()
    changes = apply_overrides(shipped, {"stage2.lr": 0.01, "stage1.epochs": 20})  # epochs: already 20
    assert changes == {"stage2.lr": (0.001, 0.01)}
    assert changed_lines(original, shipped.read_text()) == ["-  lr: 0.001", "+  lr: 0.01"]
    assert shipped.stat().st_mode & 0o777 == 0o640
    assert load_params(shipped).stage2.lr == 0.01
    assert not [p.name for p in shipped.parent.iterdir() if p.name != "params.yaml"]  # no temp file, no backup


def test_quoted_string_and_dict_value_keep_their_place(shipped):
    original = shipped.read_text()
    runs = {"ce": {"method": "ce"}, "gce": {"method": "gce", "gce.q": 0.5}}
    changes = apply_overrides(shipped, {"schedule.cron": "*/5 * * * *", "compare.runs": runs})
    assert set(changes) == {"schedule.cron", "compare.runs"}
    diff = changed_lines(original, shipped.read_text())
    assert '-  cron: "0 3 * * *"' in diff and '+  cron: "*/5 * * * *"' in diff  # quoting style kept
    assert load_params(shipped).compare.runs == runs
    text = shipped.read_text()
    assert text.index("seeds:") < text.index("gce.q: 0.5") < text.index("tracking:")  # section order kept


@pytest.mark.parametrize(("overrides", "message"), [
    ({"stage2.lr": -1}, "stage2.lr: Input should be greater than 0 (got -1)"),
    ({"stage2.lrr": 0.1}, "unknown parameter 'stage2.lrr' (did you mean 'stage2.lr'?)"),
    ({"stage2": {"lr": 0.1}}, "unknown parameter 'stage2'"),
    ({"stage2.method": "nope"}, "stage2.method: unknown method 'nope'"),
    ({"stage2.lr": "0.01"}, "stage2.lr: expected a number, not the string '0.01'"),
])
def test_bad_override_is_one_error_and_leaves_the_file_alone(shipped, overrides, message):
    before, stat = shipped.read_bytes(), shipped.stat()
    with pytest.raises(LnlError, match=r"params\.yaml") as error:
        apply_overrides(shipped, overrides)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert shipped.read_bytes() == before and shipped.stat().st_mtime_ns == stat.st_mtime_ns


def test_no_change_writes_nothing(shipped):
    os.utime(shipped, ns=(1_000_000_000, 1_000_000_000))
    same = flatten_params(load_params(shipped))
    assert apply_overrides(shipped, same) == {}
    assert apply_overrides(shipped, {"stage1.weight_decay": 1e-5, "data.classes": None}) == {}
    assert shipped.stat().st_mtime_ns == 1_000_000_000


def test_other_yaml_styles_keep_their_bytes(tmp_path):
    path = tmp_path / "params.yaml"
    text = "# top\nstage2:\n    method: ce   # m\n    lr: 0.5\n    init: ~\ncompare:\n    seeds:\n    - 1\n"
    path.write_text(text)
    apply_overrides(path, {"stage2.lr": 0.25, "noise.rate": 0.2})  # noise: a section the file lacks
    assert path.read_text() == text.replace("lr: 0.5", "lr: 0.25") + "noise:\n    rate: 0.2\n"


def test_flatten_descends_only_into_sections():
    flat = flatten_params(Params())
    assert flat["stage2.lr"] == 0.001 and flat["stage2.meta.scope"] is None
    assert flat["compare.runs"] == Params().compare.runs and isinstance(flat["compare.runs"], dict)
    assert "noise.class_map" in flat and "model.normalize" in flat and "stage2.meta" not in flat
    assert len(flat) == len(set(flat)) > 100


def test_null_style_stays_inside_params_file(shipped):
    """Editing params.yaml must not change how DVC, in the same process, writes None into dvc.lock (`key:`)."""
    from dvc.utils.serialize import dumps_yaml

    before = dumps_yaml({"data": {"classes": None}})
    apply_overrides(shipped, {"stage2.lr": 0.01, "data.classes": None})
    assert dumps_yaml({"data": {"classes": None}}) == before == "data:\n  classes:\n"
    assert "classes: null" in shipped.read_text()  # params.yaml itself keeps its spelled-out nulls
