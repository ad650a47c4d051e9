"""The comparison sub-pipeline: named runs × seeds on one cached stage one, cached per run, one table."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow

CHEAP = {"method": "mwnet", "meta.scope": "head"}


def ran(output: str) -> list[str]:
    """The stages that ran, less the pipeline's always-run `inputs` fingerprint stage."""
    return [s for s in re.findall(r"Running stage '([^']+)'", output) if s != "inputs"]


def test_compare_runs_every_method_once_and_adds_only_new_runs(tmp_path, mlflow_db):
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, compare={"seeds": [0, 1], "runs": {"ce": {"method": "ce"}, "mwnet-head": CHEAP,
                                                       "mln": {"method": "metalabelnet", "meta.interval": 2}}})
    run(["dvc", "repro"], ws)
    first = run(["dvc", "repro", "compare/dvc.yaml"], ws).stdout
    assert sorted(ran(first)) == ["compare/dvc.yaml:run@ce", "compare/dvc.yaml:run@mln", "compare/dvc.yaml:run@mwnet-head",
                                  "compare/dvc.yaml:table"]
    table = (ws / "outputs/comparison.md").read_text()
    assert re.search(r"^\| ce \| defaults \|.*\| 1\.00 \|$", table, re.M)
    assert re.search(r"^\| mwnet-head \| meta\.scope=head \|", table, re.M)
    summary = json.loads((ws / "metrics/comparison.json").read_text())
    assert set(summary) == {"ce", "mwnet-head", "mln"} and summary["ce"]["test_acc_selected"][0] > 0
    for seed in (0, 1):
        run_eval = json.loads((ws / f"outputs/compare/mwnet-head/seed-{seed}/eval.json").read_text())
        assert run_eval["method"] == "mwnet" and "test_acc_labelfree_ensemble" in run_eval

    assert ran(run(["dvc", "repro", "compare/dvc.yaml"], ws).stdout) == []
    from components.config import load_params
    from components.tracking.comparison import track_comparison

    tracked = track_comparison(ws, load_params(ws / "params.yaml"))
    assert tracked["new_run"] and track_comparison(ws, load_params(ws / "params.yaml"))["new_run"] is False

    write_params(ws, compare={"seeds": [0, 1], "runs": {"ce": {"method": "ce"}, "mwnet-head": CHEAP,
                                                       "mln": {"method": "metalabelnet", "meta.interval": 2},
                                                       "clid": {"method": "clidmu", "clidmu.meta_set_size": 100}}})
    added = run(["dvc", "repro", "compare/dvc.yaml"], ws).stdout
    assert sorted(ran(added)) == ["compare/dvc.yaml:run@clid", "compare/dvc.yaml:table"]


def test_stage2_command_line_override_is_validated(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    result = run([sys.executable, "-m", "components.stages.stage2", "--set", "meta.scope=everything"], ws, check=False)
    assert result.returncode == 2 and "stage2.meta.scope" in result.stderr and "Traceback" not in result.stderr
