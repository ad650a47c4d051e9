"""MLflow: one run per pipeline state, curves and artifacts, idempotent registration, champion alias."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import load_params
from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("tracking") / "ws", git=False)
    run(["dvc", "repro"], ws)
    return ws


def test_track_logs_once_registers_and_serves_champion(workspace, mlflow_db):
    import mlflow
    from mlflow import MlflowClient

    from components.tracking.tracker import track

    params = load_params(workspace / "params.yaml")
    first = track(workspace, params)
    assert first["new_run"] and first["new_version"] and first["promoted"]
    assert first["version"] == "1" and first["champion"] == "1"
    again = track(workspace, params)  # same dvc.lock: nothing new, the same run and version reported
    assert again["new_run"] is False and again["run_id"] == first["run_id"] and again["version"] == "1"
    assert again["experiment_id"] == first["experiment_id"]

    client = MlflowClient(mlflow_db)
    tracked = client.get_run(first["run_id"])
    assert tracked.info.experiment_id == first["experiment_id"] and tracked.info.status == "FINISHED"
    assert tracked.data.tags["lnlflow.complete"] == "true"
    assert "mlflow.source.git.commit" not in tracked.data.tags  # the workspace is not a git repository
    run_data = tracked.data
    assert run_data.params["stage2.method"] == "ido" and run_data.params["noise.rate"] == "0.4"
    assert "test_acc_selected" in run_data.metrics and "noise_auc" in run_data.metrics
    assert len(client.get_metric_history(first["run_id"], "stage1/loss")) == params.stage1.epochs
    assert len(client.get_metric_history(first["run_id"], "stage2/loss")) == params.stage2.epochs
    artifacts = {a.path for folder in ("plots", "reports") for a in client.list_artifacts(first["run_id"], folder)}
    assert {"plots/confusion_matrix.png", "plots/learning_curves.png", "reports/label_issues.csv",
            "reports/label_issues.html"} <= artifacts
    name = params.tracking.model_name
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(client.get_model_version_by_alias(name, "candidate").version) == "1"
    description = client.get_model_version(name, "1").description
    assert "like load_digits().images" in description and "<" not in description  # how to call it, no HTML to drop
    assert client.get_registered_model(name).description.startswith("**lnlflow** classifier of digits")
    health = run_data.metrics  # eval.json's label_health: the estimate beside the truth, with its interval
    assert health["estimated_noise_rate_low"] <= health["estimated_noise_rate_high"] and "actual_noise_rate" in health
    assert 0 < health["estimated_noise_rate"] < 1
    tables = {a.path for a in client.list_artifacts(first["run_id"], "evaluation")}
    assert "evaluation/label_health_per_class.json" in tables
    assert champion.run_id == first["run_id"] and float(champion.tags["val_acc_clean_selected"]) > 0

    from sklearn.datasets import load_digits

    out = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(load_digits().images[:7])  # raw, 0..16
    assert out.shape == (7, 12) and list(out.columns[:2]) == ["label", "probability"]
    np.testing.assert_allclose(out.iloc[:, 2:].sum(1), 1.0, rtol=1e-5)

    # A second model: a new version becomes `candidate`; `champion` goes to the better validation accuracy.
    write_params(workspace, stage2={"method": "ce", "epochs": 3})
    run(["dvc", "repro"], workspace)
    second = track(workspace, load_params(workspace / "params.yaml"))
    assert second["new_run"] and second["version"] == "2"
    assert str(client.get_model_version_by_alias(name, "candidate").version) == "2"
    scores = {str(v.version): float(v.tags["val_acc_clean_selected"]) for v in client.search_model_versions(f"name='{name}'")}
    expected = "2" if scores["2"] > scores["1"] else "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == expected
    assert second["champion"] == expected and second["promoted"] == (expected == "2")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt itself
def test_a_ctrl_c_that_python_swallows_is_still_noticed():
    """Python drops a KeyboardInterrupt raised inside `__del__` (dulwich's, during a track); the flag keeps it."""
    import signal

    from components.tracking.tracker import _noticing_interrupts

    class Swallower:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    with _noticing_interrupts() as seen:
        Swallower()  # the interrupt is raised in __del__: Python prints "Exception ignored" and goes on
    assert seen.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
