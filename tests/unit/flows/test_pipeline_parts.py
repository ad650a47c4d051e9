"""What a Prefect user reads: the results table, the MLflow line and link, the parameters artifact (no server)."""

from __future__ import annotations

import shutil

from flows.pipeline import apply_run_overrides, params_markdown, results_markdown, tracking_line
from tests.conftest import ROOT

METRICS = {"method": "ido", "actual_noise_rate": 0.4, "test_acc_selected": 0.9, "test_acc_last": 0.8,
           "test_acc_oracle": 0.95, "noise_auc": None, "test_acc_labelfree_ensemble": 0.85}
NOISE = {"kind": "symmetric_exclusive", "requested_rate": 0.4}


def test_results_table_has_a_header_and_links_the_mlflow_run(monkeypatch):
    monkeypatch.setenv("LNLFLOW_MLFLOW_UI_URL", "http://mlflow.lan:5000/")
    tracked = {"run_id": "abc", "new_run": True, "uri": "sqlite://", "experiment_id": "7"}
    text = results_markdown(METRICS, NOISE, tracked, {"data": False, "stage2": True})
    lines = text.splitlines()
    assert lines[2:4] == ["| result | value |", "| --- | --- |"]
    assert ("| MLflow run | [abc](http://mlflow.lan:5000/#/experiments/7/runs/abc?workflowType=machine_learning) "
            "(new) |") in lines  # the model-training view
    assert "| stages run (others cached) | stage2 |" in lines
    assert "| wrong labels, estimated from the model's scores | n/a |" in lines  # an eval.json without the block
    health = {"estimated_noise_rate": 0.3998, "estimated_noise_rate_interval": [0.372, 0.4312], "per_class": [],
              "top_confusions": [{"given": "8", "true": "7", "share": 0.4237}]}
    assert ("| wrong labels, estimated from the model's scores | 39.98 % (95 % interval 37.20 % – 43.12 %); most "
            "confused: given 8, truly 7 (42.37 %) |") in results_markdown(
        {**METRICS, "label_health": health}, NOISE, tracked, {}).splitlines()
    assert any(line.startswith("| flagged labels | `reports/label_issues.csv`; with images: [label_issues.html](")
               and "/artifacts/reports/label_issues.html?workflowType=machine_learning)" in line for line in lines)
    monkeypatch.delenv("LNLFLOW_MLFLOW_UI_URL")
    old = results_markdown(METRICS, NOISE, {"run_id": "abc", "new_run": False, "uri": "x"}, {})
    assert "| MLflow run | `abc` (already logged) |" in old


def test_tracking_line_says_what_was_logged():
    assert tracking_line({"run_id": "r1", "new_run": True, "version": "3", "new_version": True, "champion": "2"}) == \
        "MLflow run r1 logged; model version 3 registered (champion: 2)"
    assert tracking_line({"run_id": "r1", "new_run": False}) == \
        "MLflow: this pipeline state is already logged as run r1"


def test_direct_call_applies_given_overrides_and_the_artifact_lists_them(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    assert apply_run_overrides(tmp_path, None) == {}
    changes = apply_run_overrides(tmp_path, {"stage2.lr": 0.002, "stage2.epochs": 30})  # outside a deployment run
    assert changes == {"stage2.lr": (0.001, 0.002)}
    text = params_markdown(changes, (tmp_path / "params.yaml").read_text())
    assert "| parameter | before | after |" in text and "| stage2.lr | 0.001 | 0.002 |" in text
    assert "params.yaml sha256 `" in text and "```yaml\n# lnlflow parameters" in text
