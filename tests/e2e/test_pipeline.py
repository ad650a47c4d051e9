"""End to end through the real entry points: dvc repro, caching, exact invalidation, sweeps, bad input."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow

STAGES = ("data", "noise", "stage1", "stage2", "evaluate")


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


@pytest.fixture(scope="module")
def repro_workspace(tmp_path_factory):
    """A git + DVC workspace after one full `dvc repro` (shared by the tests that only read it)."""
    ws = make_workspace(tmp_path_factory.mktemp("pipeline") / "ws", git=True)
    first = run(["dvc", "repro"], ws)
    return ws, first.stdout


def test_full_repro_writes_every_output(repro_workspace):
    ws, output = repro_workspace
    assert ran(output) == ["inputs", *STAGES]  # `inputs` fingerprints the files params.yaml names
    metrics = json.loads((ws / "metrics/eval.json").read_text())
    for key in ("test_acc_last", "test_acc_selected", "test_acc_oracle", "noise_auc", "actual_noise_rate"):
        assert metrics[key] is not None, key
    assert metrics["test_acc_oracle"] >= metrics["test_acc_selected"] - 1e-5
    assert 0.3 < metrics["actual_noise_rate"] < 0.45
    health = metrics["label_health"]  # estimated from the model's scores, beside the truth
    assert metrics["estimated_noise_rate"] == health["estimated_noise_rate"] and 0 < health["estimated_noise_rate"] < 1
    low, high = health["estimated_noise_rate_interval"]
    assert 0 <= low <= high <= 1
    assert [r["class"] for r in health["per_class"]] == [str(c) for c in range(10)]
    train = len(np.load(ws / "data/prepared/dataset.npz")["train_idx"])
    assert sum(r["n"] for r in health["per_class"]) == train
    assert all(t["given"] != t["true"] and 0 < t["share"] <= 1 for t in health["top_confusions"])
    report = (ws / "reports/label_issues.csv").read_text().splitlines()
    assert report[0].startswith("source_row,given_label")  # digits: the position in load_digits()
    probs = [float(line.split(",")[5]) for line in report[1:]]
    assert probs == sorted(probs, reverse=True)
    for png in ("confusion_matrix.png", "learning_curves.png", "stage1_wrong_events.png"):
        assert (ws / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(ws.rglob(".*.tmp")), "temporary files left behind"


def test_cached_rerun_does_nothing_and_stage2_change_reruns_only_stage2(repro_workspace):
    ws, _ = repro_workspace
    again = run(["dvc", "repro"], ws)
    assert ran(again.stdout) == ["inputs"]  # always runs (cheap); its unchanged fingerprints skip the rest
    assert "Stage 'data' didn't change, skipping" in again.stdout
    write_params(ws, stage2={"method": "ce"})
    changed = run(["dvc", "repro"], ws)
    assert ran(changed.stdout) == ["inputs", "stage2", "evaluate"]
    assert json.loads((ws / "metrics/eval.json").read_text())["method"] == "ce"
    write_params(ws)  # back to the committed params: restored from the run-cache, nothing trains
    back = run(["dvc", "repro"], ws)
    assert "Stage 'stage2' is cached - skipping run" in back.stdout, back.stdout


def test_experiment_sweep_and_metrics_diff(repro_workspace):
    ws, _ = repro_workspace
    run(["git", "add", "-A"], ws)
    run(["git", "commit", "-qm", "baseline"], ws)
    run(["dvc", "exp", "run", "-S", "noise.rate=0.6", "-S", "stage2.method=ce"], ws)
    shown = run(["dvc", "exp", "show", "--json"], ws).stdout
    assert "0.6" in shown
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], ws).stdout)
    assert "actual_noise_rate" in diff["metrics/eval.json"]


def test_bad_param_fails_before_work_with_one_message(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, noise={"rate": 1.5})
    result = run([sys.executable, "-m", "components.stages.data"], ws, check=False)
    assert result.returncode == 2
    assert "noise.rate" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (ws / "data/prepared").exists()


def test_nan_loss_stops_stage_without_partial_outputs(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, stage1={"lr": 1.0e30})
    for stage in ("data", "noise"):
        run([sys.executable, "-m", f"components.stages.{stage}"], ws)
    result = run([sys.executable, "-m", "components.stages.stage1"], ws, check=False)
    assert result.returncode == 2, result.stderr
    assert "loss became" in result.stderr and "Traceback" not in result.stderr
    assert not (ws / "outputs/stage1").exists()
    assert not (ws / "metrics/stage1.json").exists()
    assert not [p for p in ws.rglob("*") if p.name.endswith(".tmp")]


def test_user_csv_with_mlp(tmp_path):
    """Bring-your-own data: a CSV of features with string labels, trained with the MLP."""
    import numpy as np

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 3
    y = np.repeat(np.arange(3), 60)
    X = centers[y] + rng.normal(size=(180, 5))
    lines = ["f0,f1,f2,f3,f4,species"] + [",".join(f"{v:.4f}" for v in x) + f",{'abc'[c]}" for x, c in zip(X, y)]
    (tmp_path / "my.csv").write_text("\n".join(lines) + "\n")
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, data={"source": "csv", "path": str(tmp_path / "my.csv"), "label_column": "species"},
                 model={"arch": "mlp", "hidden": 16}, noise={"rate": 0.2},
                 stage1={"epochs": 10, "batch_size": 16, "lr": 0.01}, stage2={"epochs": 5, "batch_size": 16})
    run(["dvc", "repro"], ws)
    manifest = json.loads((ws / "data/prepared/manifest.json").read_text())
    assert manifest["classes"] == ["a", "b", "c"] and manifest["input_shape"] == [5]
    assert json.loads((ws / "metrics/eval.json").read_text())["test_acc_selected"] > 0.5
    assert yaml.safe_load((ws / "params.yaml").read_text())["model"]["arch"] == "mlp"
