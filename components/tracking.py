"""The MLflow writer: one run per pipeline execution, the model registered idempotently, aliases moved.

The only module that imports MLflow, and only inside functions (the import costs ~3 s). It runs after
`dvc repro` (from `make run`, the Prefect flow, or `lnlflow track`), never inside a DVC stage, so a
cached stage can never swallow a run. Runs are keyed by a digest of `dvc.lock`: tracking the same
pipeline state twice logs nothing new, and a model whose DVC hash is already registered gets no new version.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from components import paths
from components.config import Params, load_params
from components.errors import LnlError
from components.io import read_json, read_tsv

CANDIDATE, CHAMPION = "candidate", "champion"
SELECTION_METRIC = "val_acc_clean_selected"  # accuracy on the trusted validation split with clean labels


def default_tracking_uri(root: Path) -> str:
    """SQLite in the project root (the file store is refused by MLflow >= 3.13)."""
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def configure(root: Path) -> str:
    """Point MLflow at the project's store unless MLFLOW_TRACKING_URI says otherwise; returns the URI."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", default_tracking_uri(root))
    return os.environ["MLFLOW_TRACKING_URI"]


def lock_state(root: Path) -> tuple[str, dict[str, str]]:
    """(sha256 of dvc.lock's stage entries, {stage: md5 of its first output}) — the run's identity."""
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        raise LnlError("dvc.lock not found: run `dvc repro` before tracking")
    lock = yaml.safe_load(lock_path.read_text()) or {}
    stages = lock.get("stages", {})
    missing = [s for s in ("data", "noise", "stage1", "stage2", "evaluate") if s not in stages]
    if missing:
        raise LnlError(f"dvc.lock has no entry for stage(s) {', '.join(missing)}: run `dvc repro` first")
    digest = hashlib.sha256(yaml.safe_dump(stages, sort_keys=True).encode()).hexdigest()
    outs = {name: entry["outs"][0]["md5"] for name, entry in stages.items() if entry.get("outs")}
    return digest, outs


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_server(uri: str) -> bool:
    """True for a tracking server (http/https): it owns the artifact store and clients upload through it."""
    return uri.split(":", 1)[0].lower() in ("http", "https")


def _local_path(location: str) -> Path | None:
    """The filesystem path of a `file:` or scheme-less artifact location; None for s3://, mlflow-artifacts:/ …."""
    parsed = urlparse(location)
    return Path(url2pathname(parsed.path)) if parsed.scheme in ("", "file") else None


def _experiment_id(client, name: str, root: Path, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        location = experiment.artifact_location
        local = _local_path(location) if is_server(uri) else None
        # A server does not proxy an experiment created with a local artifact path: this client would write
        # there itself. Fine on the server's machine or a shared disk; elsewhere artifacts would go astray.
        if local is not None and not local.parent.is_dir():
            raise LnlError(
                f"MLflow experiment '{name}' on {uri} stores artifacts at {location}, a local path that does not "
                "exist on this machine and that the server does not proxy: set tracking.experiment to a new "
                "experiment name, so that the server creates it under its --artifacts-destination"
            )
        return experiment.experiment_id
    if is_server(uri):  # the server's root, e.g. proxied mlflow-artifacts:/ under its --artifacts-destination
        return client.create_experiment(name)
    artifacts = (root / "mlartifacts").resolve().as_uri()  # absolute, so runs started elsewhere land here too
    return client.create_experiment(name, artifact_location=artifacts)


def _log_curves(mlflow, prefix: str, rows: list[dict[str, float]]) -> None:
    for row in rows:
        step = int(row["epoch"])
        mlflow.log_metrics({f"{prefix}/{k}": v for k, v in row.items() if k != "epoch" and v == v}, step=step)


def _log_model(mlflow, root: Path):
    """Log the selected model as a pyfunc that takes raw source data and returns class names + probabilities."""
    from components.serving import log_model

    return log_model(mlflow, root)


def _register(client, mlflow, model_uri: str, name: str, model_md5: str, tags: dict[str, str]) -> dict[str, Any]:
    """Create a version unless this model hash is registered; alias `candidate`; promote to `champion` if better."""
    from mlflow.exceptions import MlflowException

    existing = client.search_model_versions(f"name='{name}' and tags.dvc_md5='{model_md5}'")
    if existing:
        return {"version": str(existing[0].version), "new_version": False, "champion": _champion(client, name)}
    version = str(mlflow.register_model(model_uri, name, tags={"dvc_md5": model_md5, **tags}).version)
    client.set_registered_model_alias(name, CANDIDATE, version)
    score = float(tags[SELECTION_METRIC])
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        best = float(current.tags.get(SELECTION_METRIC, "-inf"))
    except MlflowException:
        current, best = None, float("-inf")
    promoted = score > best
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return {"version": version, "new_version": True, "promoted": promoted,
            "champion": version if promoted else str(current.version)}


def _champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _open(root: Path, params: Params, tag: str, digest: str):
    """(client, experiment id, tracking URI, id of an existing run tagged `tag`=`digest` or None)."""
    from mlflow import MlflowClient

    uri = configure(root)
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, params.tracking.experiment, root, uri)
    previous = client.search_runs([experiment_id], f"tags.`{tag}` = '{digest}'", max_results=1)
    return client, experiment_id, uri, previous[0].info.run_id if previous else None


def track(root: Path, params: Params) -> dict[str, Any]:
    """Log the pipeline state in `root` as one MLflow run (unless already logged) and register its model."""
    digest, outs = lock_state(root)
    evaluation = read_json(root / paths.EVAL_METRICS)
    noise = read_json(root / paths.NOISE_MANIFEST)
    import mlflow

    client, experiment_id, uri, previous = _open(root, params, "dvc.lock_sha256", digest)
    if previous:
        return {"run_id": previous, "new_run": False, "uri": uri}

    rate = noise.get("requested_rate")  # None for real noise: name the run after its convention, e.g. real/aggre
    setting = f"{noise['kind']}-{rate:g}" if rate is not None else noise["convention"].replace("/", "-").replace(" ", "_")
    run_name = f"{evaluation['method']}-{setting}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params(flatten(params.model_dump(mode="json")))
        mlflow.set_tags({
            "dvc.lock_sha256": digest,
            **{f"dvc.{stage}_md5": md5 for stage, md5 in outs.items()},
            "noise_convention": noise["convention"],
            "method": evaluation["method"],
            "model_serialization": "pickle",
        })
        numbers = {k: v for k, v in flatten(evaluation).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        mlflow.log_metrics({k.replace("per_class_acc.", "per_class_acc/"): float(v) for k, v in numbers.items()})
        _log_curves(mlflow, "stage1", read_tsv(root / paths.STAGE1_LOG))
        _log_curves(mlflow, "stage2", read_tsv(root / paths.STAGE2_LOG))
        for png in sorted((root / paths.PLOTS).glob("*.png")):
            mlflow.log_artifact(str(png), "plots")
        mlflow.log_artifact(str(root / paths.LABEL_ISSUES), "reports")
        for extra in (paths.DATA_MANIFEST, paths.NOISE_MANIFEST, paths.EVAL_METRICS, Path("params.yaml"), Path("dvc.lock")):
            mlflow.log_artifact(str(root / extra), "pipeline")
        info = _log_model(mlflow, root)
        version_tags = {
            SELECTION_METRIC: f"{evaluation[SELECTION_METRIC]:.6f}",
            "test_acc_selected": f"{evaluation['test_acc_selected']:.6f}",
            "noise_rate": f"{noise['realised_rate']:.6f}",
            "noise_convention": noise["convention"],
            "method": evaluation["method"],
            "validation_status": "clean_val" if params.noise.val_labels == "clean" else "noisy_val",
        }
        registry = _register(client, mlflow, info.model_uri, params.tracking.model_name, outs["stage2"], version_tags)
    return {"run_id": run.info.run_id, "new_run": True, "uri": uri, **registry}


def track_comparison(root: Path, params: Params) -> dict[str, Any]:
    """Log the comparison (compare/dvc.yaml) as one MLflow run, keyed by compare/dvc.lock (idempotent)."""
    lock_path = root / "compare" / "dvc.lock"
    if not lock_path.is_file() or not (root / paths.COMPARISON_MD).is_file():
        raise LnlError("no comparison results: run `dvc repro compare/dvc.yaml` (or `make compare`) first")
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    summary = read_json(root / paths.COMPARISON_METRICS)
    import mlflow

    _, experiment_id, uri, previous = _open(root, params, "compare.lock_sha256", digest)
    if previous:
        return {"run_id": previous, "new_run": False, "uri": uri}
    with mlflow.start_run(experiment_id=experiment_id, run_name="comparison") as run:
        mlflow.log_params(flatten({"compare": params.compare.model_dump(mode="json"),
                                   "stage2": params.stage2.model_dump(mode="json"), "noise": params.noise.model_dump(mode="json")}))
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
    return {"run_id": run.info.run_id, "new_run": True, "uri": uri}


def main(argv: list[str] | None = None) -> None:
    """`lnlflow track [--compare]`: track the pipeline state (or the comparison) of the current directory."""
    import argparse

    parser = argparse.ArgumentParser(prog="lnlflow track")
    parser.add_argument("--compare", action="store_true", help="track the method comparison instead")
    args = parser.parse_args(argv)
    root = Path.cwd()
    params = load_params(root / "params.yaml")
    if args.compare:
        result = track_comparison(root, params)
        state = "logged as" if result["new_run"] else "already logged as"
        print(f"track: comparison {state} MLflow run {result['run_id']}")
        return
    result = track(root, params)
    if not result["new_run"]:
        print(f"track: this pipeline state is already logged as MLflow run {result['run_id']} (nothing new)")
        return
    name = params.tracking.model_name
    verb = "registered as new" if result["new_version"] else "already registered as"
    print(
        f"track: MLflow run {result['run_id']}; model {verb} version {result['version']} of '{name}'"
        f" (champion: version {result['champion']})"
    )
