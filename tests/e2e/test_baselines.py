"""The classic baselines end to end: the pipeline with DivideMix (an ensemble model), and every baseline in the
comparison table with its cost ratio to CE and, where it has one, its noise-detection score."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow

BASELINES = ("gce", "sce", "elr", "coteaching", "dividemix")


def test_every_baseline_runs_end_to_end_and_lands_in_the_comparison(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    runs = {"ce": {"method": "ce"}, **{name: {"method": name} for name in BASELINES}}
    write_params(ws, stage2={"method": "dividemix"}, compare={"seeds": [0], "runs": runs})
    run(["dvc", "repro"], ws)
    evaluation = json.loads((ws / "metrics/eval.json").read_text())
    assert evaluation["method"] == "dividemix" and 0 <= evaluation["noise_auc_stage2"] <= 1
    assert json.loads((ws / "metrics/stage2.json").read_text())["init"] == "base"

    run(["dvc", "repro", "compare/dvc.yaml"], ws)
    table = (ws / "outputs/comparison.md").read_text()
    for name in ("ce", *BASELINES):
        assert re.search(rf"^\| {name} \|", table, re.M), name
    for name in BASELINES:
        folder = ws / "outputs/compare" / name / "seed-0"
        run_eval = json.loads((folder / "eval.json").read_text())
        assert 0 < run_eval["test_acc_selected"] <= 1, name  # 2 tiny epochs: accuracy itself is benchmarked
        if name in ("coteaching", "dividemix"):  # methods with per-sample clean probabilities are scored
            assert 0.5 < run_eval["noise_auc_stage2"] <= 1, name
        expected_init = "base" if name == "dividemix" else "scratch"
        assert json.loads((folder / "stage2.json").read_text())["init"] == expected_init


def test_scratch_start_for_a_warm_up_method_is_one_error_before_work(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    result = run([sys.executable, "-m", "components.stages.stage2", "--method", "dividemix", "--set", "init=scratch"],
                 ws, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "stage2.init: method 'dividemix' supports only base" in result.stderr
