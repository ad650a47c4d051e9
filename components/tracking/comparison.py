"""The method comparison (compare/dvc.yaml) as one MLflow run, keyed by compare/dvc.lock."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from components import paths
from components.config import Params
from components.errors import LnlError
from components.io import read_json
from components.tracking.experiment import _experiment_id, configure
from components.tracking.pipeline_state import flatten


def track_comparison(root: Path, params: Params) -> dict[str, Any]:
    """Log the comparison (compare/dvc.yaml) as one MLflow run, keyed by compare/dvc.lock (idempotent)."""
    lock_path = root / "compare" / "dvc.lock"
    if not lock_path.is_file() or not (root / paths.COMPARISON_MD).is_file():
        raise LnlError("no comparison results: run `dvc repro compare/dvc.yaml` (or `make compare`) first")
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    summary = read_json(root / paths.COMPARISON_METRICS)
    import mlflow
    from mlflow import MlflowClient

    uri = configure(root)
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, params.tracking.experiment, root, uri)
    query = f"tags.`compare.lock_sha256` = '{digest}' and attributes.status = 'FINISHED'"
    previous = client.search_runs([experiment_id], query, max_results=1)
    if previous:
        return {"run_id": previous[0].info.run_id, "new_run": False, "uri": uri, "experiment_id": experiment_id}
    with mlflow.start_run(experiment_id=experiment_id, run_name="comparison") as run:  # an error ends it FAILED
        compared = {"compare": params.compare.model_dump(mode="json"), "stage2": params.stage2.model_dump(mode="json"),
                    "noise": params.noise.model_dump(mode="json")}
        flat = flatten(compared)
        mlflow.log_params({k: repr(v) if isinstance(v, float) else v for k, v in flat.items() if v is not None})
        mlflow.set_tags({"compare.lock_sha256": digest, "kind": "comparison"})
        metrics = {}
        for name, row in summary.items():
            for key in ("test_acc_selected", "test_acc_last", "test_acc_labelfree_ensemble", "test_acc_oracle"):
                if row.get(key):
                    metrics[f"{name}/{key}_mean"], metrics[f"{name}/{key}_std"] = row[key]
            metrics[f"{name}/train_seconds_per_epoch"] = row["train_seconds_per_epoch"]
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(root / paths.COMPARISON_MD), "comparison")
        mlflow.log_artifact(str(root / paths.COMPARISON_METRICS), "comparison")
    return {"run_id": run.info.run_id, "new_run": True, "uri": uri, "experiment_id": experiment_id}
