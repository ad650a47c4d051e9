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


def label_studio_export(tasks: list[dict], truth) -> list[dict]:
    """What Label Studio's JSON export holds after a reviewer chose the true class of every task."""
    return [{**task, "id": i + 1, "annotations": [{
        "id": i + 1, "was_cancelled": False, "created_at": "2026-12-03T10:00:00Z",
        "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                    "value": {"choices": [str(truth[task["data"]["source_row"]])]}}]}]}
        for i, task in enumerate(tasks)]


def test_corrections_round(tmp_path, mlflow_db):
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, stage1={"epochs": 6})
    run(["dvc", "repro"], ws)
    truth = load_digits().target
    first = report(ws)
    # the report names load_digits() positions: its given label is the noisy one, truth is the source's
    noisy = np.load(ws / "data/noisy/labels.npz")["y_noisy"]
    assert all(int(r["given_label"]) == noisy[int(r["dataset_row"])] for r in first)
    assert all(r["source_row"] == r["dataset_row"] for r in first)
    page = (ws / "reports/label_issues.html").read_text()
    assert page.count("data:image/png;base64,") == 200 and "http" not in page.split("<body", 1)[1]
    # round 1 through Label Studio: export the 20 most doubtful labels, a reviewer picks the true class of each
    run(["lnlflow", "review", "export", "--top", "20"], ws)
    tasks = json.loads((ws / "review/label_studio/tasks.json").read_text())
    assert [t["data"]["source_row"] for t in tasks] == [int(r["source_row"]) for r in first[:20]]
    (ws / "export.json").write_text(json.dumps(label_studio_export(tasks, truth)))
    params_before = (ws / "params.yaml").read_text()
    run(["lnlflow", "review", "import", "export.json"], ws)
    params_after = (ws / "params.yaml").read_text()  # the import names the new CSV in params.yaml, nothing else
    assert [a for a, b in zip(params_before.splitlines(), params_after.splitlines()) if a != b] == \
        ["  corrections: null"]
    assert yaml.safe_load(params_after)["data"]["corrections"] == "corrections.csv"
    second = run(["dvc", "repro"], ws)
    assert ran(second.stdout) == ["inputs", "noise", "stage1", "stage2", "evaluate"]  # not data: the split stays
    labels = np.load(ws / "data/noisy/labels.npz")
    rows = [t["data"]["source_row"] for t in tasks]
    assert labels["y_noisy"][rows].tolist() == truth[rows].tolist()
    assert labels["verified"].sum() == 20 and labels["verified"][rows].all()
    after = report(ws)
    verified = [r for r in after if r["verified"] == "1"]
    assert sorted(int(r["source_row"]) for r in verified) == sorted(rows)
    assert after[-20:] == verified and all(float(r["p_label_wrong"]) == 0 for r in verified)  # never flagged
    page = (ws / "reports/label_issues.html").read_text()  # the 200 most doubtful, then the verified rows, marked
    cards = re.findall(r'data-verified="(\d)"><img src="data:image/png;base64,[^"]+" alt="row (\d+)"', page)
    assert [v for v, _ in cards] == ["0"] * 200 + ["1"] * 20
    assert sorted(int(r) for _, r in cards[200:]) == sorted(rows) and "20 verified by a person (listed last" in page
    metrics = json.loads((ws / "metrics/eval.json").read_text())
    changed = int((truth[rows] != noisy[rows]).sum())
    assert metrics["corrections_rows"] == 20 and metrics["verified_rows"] == 20
    assert metrics["labels_corrected"] == changed > 0
    assert metrics["noise_rate_after_corrections"] < metrics["actual_noise_rate"]
    lines = (ws / "corrections.csv").read_text().splitlines()
    assert lines[0] == "source_row,label,trusted" and len(lines) == 21
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
    assert logged.data.metrics["corrections_rows"] == 19 and logged.data.metrics["verified_rows"] == 19
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "reports")}
    assert "reports/label_issues.html" in artifacts
