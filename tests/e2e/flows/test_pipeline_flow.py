"""The Prefect flow on a test server: one task per stage, DVC skipping, parameter overrides, deployment."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import make_workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_runs_stages_tracks_and_reuses_cache(prefect_server, tmp_path, mlflow_db):
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline

    ws = make_workspace(tmp_path / "ws", git=False)
    first = pipeline(root=str(ws))
    assert first["stages_ran"] == ["inputs", "data", "noise", "stage1", "stage2", "evaluate"]
    assert first["tracking"]["new_run"] and 0.0 <= first["metrics"]["test_acc_selected"] <= 1.0

    again = pipeline(root=str(ws))
    assert again["stages_ran"] == ["inputs"] and again["tracking"]["new_run"] is False

    before = (ws / "params.yaml").read_text()
    third = pipeline(overrides={"stage2.method": "ce", "stage2.epochs": 2}, root=str(ws))  # epochs: already 2
    assert third["stages_ran"] == ["inputs", "stage2", "evaluate"]
    assert third["overrides_applied"] == {"stage2.method": "ce"}
    assert (ws / "params.yaml").read_text() == before.replace("  method: ido\n", "  method: ce\n", 1)
    assert not (ws / "params.yaml.bak").exists()

    # Raw filter calls: prefect 3.8.8's client sends nulls its own server rejects for these filters.
    with get_client(sync_client=True) as client:
        page = {"limit": 200, "offset": 0}
        artifacts = client._client.post("/artifacts/filter", json={**page, "sort": "CREATED_DESC"}).json()
        task_runs = client._client.post("/task_runs/filter", json={**page, "sort": "EXPECTED_START_TIME_DESC"}).json()
    results = next(a["data"] for a in artifacts if a["key"] == "lnlflow-results")  # the newest: the third run
    assert "| result | value |\n| --- | --- |" in results and "test accuracy" in results
    run_id = third["tracking"]["run_id"]
    assert f"[{run_id}](http://127.0.0.1:5000/#/experiments/" in results or f"`{run_id}`" in results
    used = next(a["data"] for a in artifacts if a["key"] == "lnlflow-params")
    assert "| stage2.method | 'ido' | 'ce' |" in used and "method: ce" in used
    states = {(t["name"], t["state"]["name"]) for t in task_runs}
    assert {("dvc-data", "Ran"), ("dvc-data", "Cached"), ("dvc-stage2", "Ran"), ("dvc-evaluate", "Cached")} <= states

    # reviewed labels (the review page's corrections CSV) named through the flow: the next run retrains on them,
    # noise onward, and its MLflow run counts them
    with open(ws / "data/prepared/rows.csv", newline="") as handle:
        train = [r["source_row"] for r in csv.DictReader(handle) if r["split"] in ("0", "train")][:3]
    (ws / "corrections.csv").write_text("source_row,label,trusted\n" + "".join(f"{r},3,1\n" for r in train))
    fourth = pipeline(overrides={"data.corrections": "corrections.csv"}, root=str(ws))
    assert fourth["stages_ran"] == ["inputs", "noise", "stage1", "stage2", "evaluate"]
    assert fourth["metrics"]["verified_rows"] == 3 and fourth["tracking"]["new_run"]
    from mlflow import MlflowClient

    logged = MlflowClient(mlflow_db).get_run(fourth["tracking"]["run_id"]).data.metrics
    assert logged["verified_rows"] == 3 and logged["corrections_rows"] == 3


def test_deployment_has_cron_and_parameter_form(tmp_path):
    from flows.deploy import build_deployment

    ws = make_workspace(tmp_path / "ws", git=False)
    deployment = build_deployment(ws)
    assert deployment.name == "lnlflow-nightly"
    assert deployment.schedules[0].schedule.cron == "0 3 * * *"
    schema = deployment._parameter_openapi_schema.model_dump()
    assert {"overrides", "root"} <= set(schema["properties"])
    defaults = deployment.parameters["overrides"]  # the form shows params.yaml, not the code's defaults
    assert defaults["model.width"] == 4 and defaults["stage2.lr"] == 0.001 and "ce" in defaults["compare.runs"]
