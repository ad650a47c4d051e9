"""The review loop end to end: flagged labels named by source row, corrections fed back through `dvc repro`,
verified rows never flagged again, every round's counts in eval.json and the MLflow run."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def report(ws) -> list[dict[str, str]]:
    with open(ws / "reports/label_issues.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def set_corrections(ws, path: str | None) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["data"]["corrections"] = path
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_corrections_round(tmp_path, mlflow_db):
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, stage1={"epochs": 6})
    run(["dvc", "repro"], ws)
    truth = load_digits().target
    first = report(ws)
    top = first[:20]
    # the report names load_digits() positions: its given label is the noisy one, truth is the source's
    noisy = np.load(ws / "data/noisy/labels.npz")["y_noisy"]
    assert all(int(r["given_label"]) == noisy[int(r["dataset_row"])] for r in first)
    assert all(r["source_row"] == r["dataset_row"] for r in first)
    lines = ["source_row,label,trusted"] + [f"{r['source_row']},{truth[int(r['source_row'])]},{1 if i < 10 else ''}"
                                           for i, r in enumerate(top)]
    (ws / "corrections.csv").write_text("\n".join(lines) + "\n")
    set_corrections(ws, "corrections.csv")
    second = run(["dvc", "repro"], ws)
    assert ran(second.stdout) == ["inputs", "noise", "stage1", "stage2", "evaluate"]  # not data: the split stays
    labels = np.load(ws / "data/noisy/labels.npz")
    rows = [int(r["source_row"]) for r in top]
    assert labels["y_noisy"][rows].tolist() == truth[rows].tolist()
    assert labels["verified"].sum() == 10 and labels["verified"][rows[:10]].all()
    after = report(ws)
    verified = [r for r in after if r["verified"] == "1"]
    assert sorted(int(r["source_row"]) for r in verified) == sorted(rows[:10])
    assert after[-10:] == verified and all(float(r["p_label_wrong"]) == 0 for r in verified)  # never flagged
    metrics = json.loads((ws / "metrics/eval.json").read_text())
    changed = int((truth[rows] != noisy[rows]).sum())
    assert metrics["corrections_rows"] == 20 and metrics["verified_rows"] == 10
    assert metrics["labels_corrected"] == changed > 0
    assert metrics["noise_rate_after_corrections"] < metrics["actual_noise_rate"]
    # an edited corrections file re-runs what reads labels, nothing before
    (ws / "corrections.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert ran(run(["dvc", "repro"], ws).stdout) == ["inputs", "noise", "stage1", "stage2", "evaluate"]
    # a correction naming an unknown row or class: one line naming the CSV line, the outputs untouched
    before = (ws / "metrics/eval.json").read_bytes()
    (ws / "corrections.csv").write_text("source_row,label\n3,7\n5000,1\n")
    bad = run(["dvc", "repro"], ws, check=False)
    assert bad.returncode != 0
    assert "lnlflow noise: error: data.corrections corrections.csv line 3: source_row 5000 is not a training or " \
           "validation row of the source" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr + bad.stdout
    (ws / "corrections.csv").write_text("source_row,label\n3,seven\n")
    bad = run(["dvc", "repro"], ws, check=False)
    assert "line 2: label 'seven' is not a class (0, 1, 2" in bad.stderr + bad.stdout
    assert (ws / "metrics/eval.json").read_bytes() == before
    # the round's counts reach MLflow
    (ws / "corrections.csv").write_text("\n".join(lines[:-1]) + "\n")
    run(["dvc", "repro"], ws)
    run(["lnlflow", "track"], ws)
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_db)
    (logged,) = client.search_runs([client.get_experiment_by_name("lnlflow").experiment_id])
    assert logged.data.metrics["corrections_rows"] == 19 and logged.data.metrics["verified_rows"] == 10
