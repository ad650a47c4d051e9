"""What one run holds: its name, tags and description, params, curves, metrics, tables, dataset, artifacts and the
model, registered at the end. Its time span is the pipeline's, not the track's."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from components import paths
from components.config import Params
from components.registry_notes import describe, health_metrics, log_health_tables
from components.summary import pct
from components.tracking.pipeline_state import logged_params
from components.tracking.registry import SELECTION_METRIC, _register

STATE_TAG, COMPLETE_TAG = "dvc.lock_sha256", "lnlflow.complete"
PROCESS_TAG = "lnlflow.process"  # "<host> <pid> <start time>" of the track logging the run: is it still alive?


def _curves(prefix: str, rows: list[dict[str, float]], now_ms: int) -> tuple[list[Any], dict[str, str]]:
    """(metric points of the columns that change over epochs, {column: value} of the constant ones)."""
    from mlflow.entities import Metric

    points, constant = [], {}
    for column in (c for c in rows[0] if c != "epoch"):
        values = [(int(row["epoch"]), row[column]) for row in rows if row[column] == row[column]]  # NaN: no point
        if len({value for _, value in values}) == 1:
            constant[f"{prefix}/{column}"] = repr(values[0][1])
        elif values:
            points += [Metric(f"{prefix}/{column}", value, now_ms, step) for step, value in values]
    return points, constant


def _log_model(mlflow, root: Path):
    """Log the selected model as a pyfunc that takes raw source data and returns class names + probabilities."""
    from components.serving import log_model
    return log_model(mlflow, root)


def _git_commit(root: Path) -> str | None:
    """HEAD of the git repository holding `root`; None when it is not one (or git is missing)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _dataset(root: Path, params: Params, data: dict[str, Any]):
    """The prepared dataset as an MLflow input: where it came from, its split sizes, the manifest's sha256."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    where = params.data.path or params.data.root
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": every reading is a local source
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str((root / where).resolve()) if where else params.data.source)
    split = data["split"]
    name = f"{data['name']} (train {split['train']}, val {split['val']}, test {split['test']})"
    return MetaDataset(source, name=name, digest=data["sha256"][:12])  # the store keeps at most 36 characters


def _note(evaluation: dict[str, Any], noise: dict[str, Any], data: dict[str, Any], digest: str,
          commit: str | None) -> str:
    """The run's description (Markdown): method, noise setting, headline numbers, pipeline state."""
    auc = "n/a" if evaluation.get("noise_auc") is None else f"{evaluation['noise_auc']:.4f}"
    return "\n".join([
        (f"**{evaluation['method']}** on {data['name']} with {noise['convention']} label noise "
         f"(requested {pct(noise['requested_rate'])}, actual {pct(noise['realised_rate'])})."),
        "",
        (f"- test accuracy {pct(evaluation['test_acc_selected'])} (checkpoint selected on validation, epoch "
         f"{evaluation.get('selected_epoch')}); last epoch {pct(evaluation.get('test_acc_last'))}; "
         f"label-free ensemble {pct(evaluation.get('test_acc_labelfree_ensemble'))}"),
        f"- noise-detection AUC {auc}",
        f"- pipeline state: dvc.lock sha256 {digest[:12]}" + (f", git commit {commit[:10]}" if commit else ""),
    ])


def _start(client, mlflow, experiment_id: str, root: Path, found: dict[str, Any], digest: str,
           outs: dict[str, str]) -> tuple[str, int]:
    """Create and activate the run; (run id, end time in ms). Its time span is the pipeline's: it ends when
    evaluate wrote eval.json and lasts the training stages' measured seconds (data/noise/evaluate are untimed)."""
    from mlflow.tracking.context.registry import resolve_tags

    evaluation, noise = found["evaluation"], found["noise"]
    rate = noise["requested_rate"]  # None for real noise: name the run after its convention, e.g. real/aggre
    setting = (f"{noise['kind']}-{rate:g}" if rate is not None
               else noise["convention"].replace("/", "-").replace(" ", "_"))
    end = (root / paths.EVAL_METRICS).stat().st_mtime
    commit = _git_commit(root)
    tags = {
        **{k: v for k, v in resolve_tags().items() if not k.startswith("mlflow.source.git")},  # that is lnlflow's repo
        **({"mlflow.source.git.commit": commit} if commit else {}),
        "mlflow.note.content": _note(evaluation, noise, found["data"], digest, commit),
        STATE_TAG: digest,
        **{f"dvc.{stage}_md5": md5 for stage, md5 in outs.items()},
        "noise_convention": noise["convention"],
        "method": evaluation["method"],
        PROCESS_TAG: f"{socket.gethostname()} {os.getpid()} {time.time()!r}",
    }
    run = client.create_run(experiment_id, start_time=int((end - found["seconds"]) * 1000), tags=tags,
                            run_name=f"{evaluation['method']}-{setting}")
    mlflow.start_run(run_id=run.info.run_id)
    return run.info.run_id, int(end * 1000)


def _log_run(client, mlflow, root: Path, made_with: Params, found: dict[str, Any], outs: dict[str, str],
             name: str) -> dict[str, Any]:
    """Params, metrics, curves, tables, dataset, artifacts and the model of the active run; then register it."""
    from mlflow.entities import Metric

    evaluation, noise, data = found["evaluation"], found["noise"], found["data"]
    run_id, now = mlflow.active_run().info.run_id, int(time.time() * 1000)
    points, constant = [], {}
    for stage, rows in found["curves"].items():
        stage_points, stage_constant = _curves(stage, rows, now)
        points += stage_points
        constant.update(stage_constant)  # e.g. stage1/lr without a schedule: a value, not a chart
    mlflow.log_params({**logged_params(made_with), **constant})
    scalars = {k: float(v) for k, v in evaluation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scalars.update(pipeline_seconds=found["seconds"], **health_metrics(evaluation))  # estimated_noise_rate: above
    client.log_batch(run_id, metrics=points + [Metric(k, v, now, 0) for k, v in scalars.items()])
    per_class = evaluation["per_class_acc"]  # a table, not ten one-bar charts
    mlflow.log_table({"label": list(range(len(per_class))), "class": list(per_class),
                      "test_accuracy": [float(v) for v in per_class.values()]}, "evaluation/per_class_accuracy.json")
    log_health_tables(mlflow, evaluation)
    input_tags = {"sha256": data["sha256"]}
    if noise.get("labels_sha256"):
        input_tags["noisy_labels_sha256"] = noise["labels_sha256"]
    mlflow.log_input(_dataset(root, made_with, data), context="training", tags=input_tags)
    for png in found["plots"]:
        mlflow.log_artifact(str(png), "plots")
    mlflow.log_artifact(str(root / paths.LABEL_ISSUES), "reports")
    mlflow.log_artifact(str(root / paths.REVIEW_PAGE), "reports")  # MLflow's artifact view renders the page
    for extra in (paths.DATA_MANIFEST, paths.NOISE_MANIFEST, paths.EVAL_METRICS, Path("params.yaml"), Path("dvc.lock")):
        mlflow.log_artifact(str(root / extra), "pipeline")
    info = _log_model(mlflow, root)
    validated = evaluation[SELECTION_METRIC] is not None  # null with data.val_fraction 0 (no validation split)
    version_tags = {
        **({SELECTION_METRIC: repr(float(evaluation[SELECTION_METRIC]))} if validated else {}),
        "test_acc_selected": repr(float(evaluation["test_acc_selected"])),
        "noise_rate": repr(float(noise["realised_rate"])),
        "noise_convention": noise["convention"],
        "method": evaluation["method"],
        "validation_status": ("no_val" if not validated else
                              "clean_val" if made_with.noise.val_labels == "clean" else "noisy_val"),
        "selection_rule": str(evaluation.get("selection_rule", "validation")),
    }
    registry = _register(client, mlflow, info.model_uri, name, outs["stage2"], version_tags)
    describe(client, name, registry, info.metadata["how_to_call"], data)  # the registry pages say how to call it
    return registry
