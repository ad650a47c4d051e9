"""The MLflow writer: one run per pipeline state, the model registered idempotently, aliases moved.

The only module that imports MLflow, and only inside functions (the import costs ~3 s). It runs after
`dvc repro` (from `make run`, the Prefect flow, or `lnlflow track`), never inside a DVC stage, so a cached
stage can never swallow a run. A pipeline state (a digest of `dvc.lock`) counts as logged only when its run
FINISHED with the `lnlflow.complete` tag and its model (keyed by its DVC hash) is registered: a failed,
interrupted or killed track blocks nothing. Before any run starts, the pipeline must be up to date (`dvc status`,
input fingerprints) and every file that is logged must exist and parse.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from components import paths
from components.config import METHOD_NAMES, Params, load_params, read_yaml, validate_params
from components.errors import LnlError, first_line
from components.io import read_json, read_tsv
from components.mlflow_home import default_tracking_uri, reanchor
from components.registry_notes import describe, health_metrics, log_health_tables
from components.summary import pct

CANDIDATE, CHAMPION = "candidate", "champion"
SELECTION_METRIC = "val_acc_clean_selected"  # accuracy on the trusted validation split with clean labels
STATE_TAG, COMPLETE_TAG = "dvc.lock_sha256", "lnlflow.complete"
PROCESS_TAG = "lnlflow.process"  # "<host> <pid> <start time>" of the track logging the run: is it still alive?
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # the UI's "machine learning" mode, not GenAI
PIPELINE_STAGES = ("data", "noise", "stage1", "stage2", "evaluate")
LOGGED_SECTIONS = ("data", "noise", "model", "augment", "runtime", "stage1", "stage2", "evaluate")  # what made outputs
META_METHODS = ("metalabelnet", "clidmu", "mwnet")  # the methods that read stage2.meta


class TrackInterrupted(KeyboardInterrupt):
    """Ctrl-C inside the MLflow run: the run is marked KILLED and nothing is registered; the message says so."""


def configure(root: Path) -> str:
    """Point MLflow at the project's store unless MLFLOW_TRACKING_URI says otherwise (re-anchored to this folder if
    the project was moved or copied: components/mlflow_home.py); returns the URI."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", default_tracking_uri(root))
    return reanchor(root, os.environ["MLFLOW_TRACKING_URI"])


def mlflow_ui_base(uri: str) -> str:
    """Where a user opens the UI: the tracking server itself, else LNLFLOW_MLFLOW_UI_URL or `make mlflow-ui`'s."""
    return uri if is_server(uri) else os.environ.get("LNLFLOW_MLFLOW_UI_URL", "http://127.0.0.1:5000")


def ui_url(base: str, experiment_id: str, run_id: str | None = None, artifact: str | Path | None = None) -> str:
    """A link into the MLflow UI in model-training mode (to a run, or to one of its artifacts, which the UI renders:
    the review page shows as a page). MLflow 3.17's UI takes its GenAI/model-training mode from the browser
    (default GenAI) or this URL parameter, not from the experiment's `mlflow.experimentKind` tag."""
    page = f"{base.rstrip('/')}/#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    if run_id and artifact is not None:
        page += f"/artifacts/{Path(artifact).as_posix()}"
    return f"{page}?workflowType=machine_learning"


def _lock_stages(root: Path, *, as_dvc: bool = False) -> dict[str, Any]:
    """dvc.lock's stage entries. `as_dvc`: parsed as DVC writes it (YAML 1.2, so `1e-05` is a float); otherwise
    with PyYAML, which the run identity digest has always used (the same text must keep the same digest)."""
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        raise LnlError("dvc.lock not found: run `dvc repro` before tracking")
    try:
        lock = read_yaml(lock_path) if as_dvc else yaml.safe_load(lock_path.read_text())
        stages = (lock or {}).get("stages", {})
    except (yaml.YAMLError, AttributeError) as error:
        raise LnlError(f"{lock_path}: corrupt file ({first_line(error)})") from None
    missing = [s for s in PIPELINE_STAGES if s not in stages]
    if missing:
        raise LnlError(f"dvc.lock has no entry for stage(s) {', '.join(missing)}: run `dvc repro` first")
    return stages


def lock_state(root: Path) -> tuple[str, dict[str, str]]:
    """(sha256 of dvc.lock's stage entries, {stage: md5 of its first output}) — the run's identity."""
    stages = _lock_stages(root)
    digest = hashlib.sha256(yaml.safe_dump(stages, sort_keys=True).encode()).hexdigest()
    outs = {name: entry["outs"][0]["md5"] for name, entry in stages.items() if entry.get("outs")}
    return digest, outs


def locked_params(root: Path) -> Params:
    """The parameters the outputs were made with: the `params.yaml` values dvc.lock recorded for each stage."""
    merged: dict[str, Any] = {}
    for entry in _lock_stages(root, as_dvc=True).values():
        for key, value in (entry.get("params") or {}).get("params.yaml", {}).items():
            *parents, leaf = key.split(".")  # a whole section (`stage2`) or one field (`noise.rate`)
            node = merged
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = {**node.get(leaf, {}), **value} if isinstance(value, dict) else value
    return validate_params(merged, source="dvc.lock (params recorded by the last dvc repro)")


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


def logged_params(params: Params) -> dict[str, str]:
    """The run's params: the sections that made the outputs, with only the active method's options (plus
    stage2.meta for the meta-learning methods) and the label-free selection; None skipped, floats as repr."""
    method = params.stage2.method
    inactive = {name for name in (*METHOD_NAMES, "meta") if name != method}
    if method in META_METHODS:
        inactive.discard("meta")
    data = params.model_dump(mode="json", include=set(LOGGED_SECTIONS))
    data["stage2"] = {key: value for key, value in data["stage2"].items() if key not in inactive}
    return {key: repr(value) if isinstance(value, float) else str(value)
            for key, value in flatten(data).items() if value is not None}


@contextlib.contextmanager
def _relative(root: Path, rel: Path):
    """Name `rel`, not the absolute path, in an error raised inside."""
    try:
        yield
    except LnlError as error:
        raise LnlError(str(error).replace(str(root / rel), str(rel))) from None


def _json(root: Path, rel: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    with _relative(root, rel):
        data = read_json(root / rel)
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise LnlError(f"{rel}: corrupt or outdated file, no {', '.join(missing)} (run `dvc repro`)")
    return data


def _tsv(root: Path, rel: Path) -> list[dict[str, float]]:
    if not (root / rel).is_file():
        raise LnlError(f"{rel}: file not found (run `dvc repro`)")
    try:
        rows = read_tsv(root / rel)
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise LnlError(f"{rel}: corrupt training log ({first_line(error)})") from None
    if not rows or any("epoch" not in row or len(row) != len(rows[0]) for row in rows):
        raise LnlError(f"{rel}: corrupt training log (no epoch rows, or rows of different widths)")
    return rows


def _check_report(root: Path, rel: Path) -> None:
    import csv

    try:
        with open(root / rel, newline="") as handle:
            header = next(csv.reader(handle), [])
    except FileNotFoundError:
        raise LnlError(f"{rel}: file not found (run `dvc repro`)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LnlError(f"{rel}: unreadable report ({first_line(error)})") from None
    if "source_row" not in header or "p_label_wrong" not in header:
        raise LnlError(f"{rel}: corrupt report (header {','.join(header)[:80]!r} lacks source_row, p_label_wrong)")


def read_inputs(root: Path) -> dict[str, Any]:
    """Every file a run logs, read and checked before MLflow is touched: one LnlError naming the first bad one."""
    from components.models import load_model_checkpoint

    for rel in (Path("params.yaml"), paths.DATASET_NPZ):
        if not (root / rel).is_file():
            raise LnlError(f"{rel}: file not found (run `dvc repro`)")
    found = {
        "evaluation": _json(root, paths.EVAL_METRICS,
                            ("method", SELECTION_METRIC, "test_acc_selected", "per_class_acc")),
        "noise": _json(root, paths.NOISE_MANIFEST, ("kind", "convention", "realised_rate", "requested_rate")),
        "data": _json(root, paths.DATA_MANIFEST, ("name", "sha256", "split", "classes")),
        "curves": {"stage1": _tsv(root, paths.STAGE1_LOG), "stage2": _tsv(root, paths.STAGE2_LOG)},
        "plots": sorted((root / paths.PLOTS).glob("*.png")),
    }
    if not found["plots"]:
        raise LnlError(f"{paths.PLOTS}/: no plots found (run `dvc repro`)")
    _check_report(root, paths.LABEL_ISSUES)
    if not (root / paths.REVIEW_PAGE).is_file():
        raise LnlError(f"{paths.REVIEW_PAGE}: file not found (run `dvc repro`)")
    with _relative(root, paths.MODEL_SELECTED):  # a corrupt model fails here, not inside the run
        load_model_checkpoint(root / paths.MODEL_SELECTED, checked=True)
    return found


def _status_detail(entries: list[Any]) -> str:
    """`dvc status` entries of one stage in words, e.g. `params.yaml: stage2 modified, reports deleted`."""
    parts = []
    for entry in entries:
        if isinstance(entry, str):
            parts.append(entry)
            continue
        for files in entry.values():  # {"changed deps" | "changed outs": {path: state | {param: state}}}
            for path, state in files.items():
                if isinstance(state, dict):
                    parts.extend(f"{path}: {key} {change}" for key, change in state.items())
                else:
                    parts.append(f"{path} {state}")
    return ", ".join(parts)


def check_fresh(root: Path) -> None:
    """Refuse outputs that the current params.yaml, code and input files would not reproduce: `dvc status` of the
    root dvc.yaml must be clean (the always-changed `inputs` stage aside) and no input file may have changed."""
    from dvc.exceptions import DvcException  # lazy, like the flows: ~1 s
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            status = repo.status(targets=[str(root / "dvc.yaml")])
    except DvcException as error:
        raise LnlError(f"dvc status failed: {first_line(error)}") from None
    changed = {key.rsplit(":", 1)[-1]: _status_detail([e for e in entries if e != "always changed"])
               for key, entries in status.items()}
    changed = {stage: detail for stage, detail in changed.items() if detail}
    if changed:
        detail = "; ".join(f"{stage}: {what}" for stage, what in changed.items())
        raise LnlError(f"the outputs are out of date ({detail}): run `dvc repro` first, then track")
    if importlib.util.find_spec("components.stages.inputs") is not None:
        from components.stages.inputs import stale_inputs

        stale = stale_inputs(root)
        if stale:
            raise LnlError(f"the outputs are out of date ({'; '.join(stale)}): run `dvc repro` first, then track")


def is_server(uri: str) -> bool:
    """True for a tracking server (http/https): it owns the artifact store and clients upload through it."""
    return uri.split(":", 1)[0].lower() in ("http", "https")


def _local_path(location: str) -> Path | None:
    """The filesystem path of a `file:` or scheme-less artifact location; None for s3://, mlflow-artifacts:/ …."""
    parsed = urlparse(location)
    return Path(url2pathname(parsed.path)) if parsed.scheme in ("", "file") else None


def _experiment_id(client, name: str, root: Path, uri: str) -> str:
    """The experiment's id, created if needed, in the UI's model-training mode (a GenAI view has no run charts)."""
    kind_key, kind = EXPERIMENT_KIND
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
        if kind_key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, kind_key, kind)
        return experiment.experiment_id
    if is_server(uri):  # the server's root, e.g. proxied mlflow-artifacts:/ under its --artifacts-destination
        return client.create_experiment(name, tags={kind_key: kind})
    artifacts = (root / "mlartifacts").resolve().as_uri()  # absolute, so runs started elsewhere land here too
    return client.create_experiment(name, artifact_location=artifacts, tags={kind_key: kind})


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


def _register(client, mlflow, model_uri: str, name: str, model_md5: str, tags: dict[str, str]) -> dict[str, Any]:
    """Create a version unless this model hash is registered; alias `candidate`; promote to `champion` if better."""
    from mlflow.exceptions import MlflowException

    existing = client.search_model_versions(f"name='{name}' and tags.dvc_md5='{model_md5}'")
    if existing:
        return {"version": str(existing[0].version), "new_version": False, "promoted": False,
                "champion": _champion(client, name)}
    version = str(mlflow.register_model(model_uri, name, tags={"dvc_md5": model_md5, **tags}).version)
    client.set_registered_model_alias(name, CANDIDATE, version)
    score = float(tags.get(SELECTION_METRIC, "-inf"))  # absent without a validation split: never beats a scored one
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        best = float(current.tags.get(SELECTION_METRIC, "-inf"))
    except MlflowException:
        current, best = None, float("-inf")
    promoted = current is None or score > best
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


def _aliases(client, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException:
        return {}


def _unregister(client, name: str, run_id: str, aliases: dict[str, str] | None = None) -> None:
    """Delete the versions a run registered (it did not finish) and put `aliases` back where they were."""
    for version in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        client.delete_model_version(name, version.version)
    for alias, version in (aliases or {}).items():
        with contextlib.suppress(Exception):  # that version may be gone too
            client.set_registered_model_alias(name, alias, version)


def _alive(run) -> bool:
    """True if the run's track process still runs on this machine (same pid, started before the run)."""
    import psutil  # a dependency of dvc

    parts = run.data.tags.get(PROCESS_TAG, "").rsplit(" ", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    try:
        process = psutil.Process(pid)
        started_before = process.create_time() <= float(parts[2]) + 1  # not a later process with a reused pid
        return pid != os.getpid() and started_before and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def _logged(client, experiment_id: str, digest: str, name: str, model_md5: str) -> tuple[Any, list[str]]:
    """(the complete run of this pipeline state or None, ids of its dead runs, now marked FAILED).

    A run is complete when it FINISHED with the completion tag and the model hash is registered. A RUNNING
    run whose process is gone (kill -9, a lost machine) is dead: marked FAILED, its registrations undone."""
    complete, dead = None, []
    for run in client.search_runs([experiment_id], f"tags.`{STATE_TAG}` = '{digest}'", max_results=200):
        info, done = run.info, run.data.tags.get(COMPLETE_TAG) == "true"
        if info.status == "RUNNING" and _alive(run):
            pid = run.data.tags[PROCESS_TAG].rsplit(" ", 2)[1]
            raise LnlError(f"another `lnlflow track` (pid {pid}) is logging this pipeline "
                           f"state as MLflow run {info.run_id} right now: wait for it to finish")
        status = info.status
        if status == "RUNNING":  # dead: killed after its last step (complete) or before it
            status = "FINISHED" if done else "FAILED"
            if not done:
                _unregister(client, name, info.run_id)
                dead.append(info.run_id)
            client.set_terminated(info.run_id, status)
        if done and status == "FINISHED" and complete is None:
            complete = run
    if complete and not client.search_model_versions(f"name='{name}' and tags.dvc_md5='{model_md5}'"):
        complete = None  # the version was deleted from the registry: log and register it again
    return complete, dead


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


def _abandon(client, mlflow, name: str, run_id: str, aliases: dict[str, str], status: str) -> None:
    """End an unfinished run as `status` (FAILED/KILLED), undoing any registration it made."""
    with contextlib.suppress(Exception):
        _unregister(client, name, run_id, aliases)
    with contextlib.suppress(Exception):
        mlflow.end_run(status)


@contextlib.contextmanager
def _noticing_interrupts() -> Iterator[threading.Event]:
    """Ctrl-C still raises KeyboardInterrupt, and is also remembered: Python drops one raised inside a `__del__`
    (dulwich's, while MLflow reads the git commit), so the run checks the flag before it counts as logged."""
    seen = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # e.g. a Prefect task thread: no signals here
        yield seen
        return

    def handler(signum, frame):
        seen.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def track(root: Path, params: Params) -> dict[str, Any]:
    """Log the pipeline state in `root` as one MLflow run (unless already logged) and register its model.

    `params` names the experiment and model; the logged parameters are the ones dvc.lock recorded. Returns
    run_id, new_run, uri, experiment_id, version, new_version, champion, promoted, recovered (dead runs
    marked FAILED)."""
    digest, outs = lock_state(root)
    made_with = locked_params(root)
    found = read_inputs(root)
    found["seconds"] = sum(row.get("seconds", 0.0) for rows in found["curves"].values() for row in rows)
    check_fresh(root)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = configure(root)
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, params.tracking.experiment, root, uri)
    name = params.tracking.model_name
    previous, dead = _logged(client, experiment_id, digest, name, outs["stage2"])
    base = {"uri": uri, "experiment_id": experiment_id, "recovered": dead}
    if previous:
        version = client.search_model_versions(f"name='{name}' and tags.dvc_md5='{outs['stage2']}'")[0].version
        return {**base, "run_id": previous.info.run_id, "new_run": False, "version": str(version),
                "new_version": False, "promoted": False, "champion": _champion(client, name)}

    aliases = _aliases(client, name)
    with _noticing_interrupts() as interrupted:
        run_id, end = _start(client, mlflow, experiment_id, root, found, digest, outs)
        try:
            registry = _log_run(client, mlflow, root, made_with, found, outs, name)
            if interrupted.is_set():  # a Ctrl-C that Python swallowed somewhere inside
                raise KeyboardInterrupt
            client.set_tag(run_id, COMPLETE_TAG, "true")  # the last step: only now is this state logged
        except KeyboardInterrupt:
            _abandon(client, mlflow, name, run_id, aliases, "KILLED")
            raise TrackInterrupted(f"interrupted; MLflow run {run_id} marked KILLED, nothing registered") from None
        except BaseException as error:
            _abandon(client, mlflow, name, run_id, aliases, "FAILED")
            if isinstance(error, (LnlError, OSError, MlflowException)):  # a user's problem: one line, no traceback
                raise LnlError(f"{first_line(error)} (MLflow run {run_id} marked FAILED, nothing registered)") from None
            raise
        mlflow.end_run()
        client.set_terminated(run_id, "FINISHED", end_time=end)
    return {**base, "run_id": run_id, "new_run": True, **registry}


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
    try:
        result = track(root, params)
    except KeyboardInterrupt as interrupt:  # our own line instead of the stages' "no outputs were written"
        detail = (str(interrupt) if isinstance(interrupt, TrackInterrupted)
                  else "interrupted before the MLflow run started; nothing logged")
        print(f"lnlflow track: {detail}", file=sys.stderr)
        raise SystemExit(130) from None
    for run_id in result["recovered"]:
        print(f"track: MLflow run {run_id} of an earlier track of this state never finished; marked it FAILED")
    name = params.tracking.model_name
    if not result["new_run"]:
        print(f"track: this pipeline state is already logged as MLflow run {result['run_id']} with version "
              f"{result['version']} of '{name}' (nothing new)")
        return
    verb = "registered as new" if result["new_version"] else "already registered as"
    print(
        f"track: MLflow run {result['run_id']}; model {verb} version {result['version']} of '{name}'"
        f" (champion: version {result['champion']})"
    )
    print(f"track: {ui_url(mlflow_ui_base(result['uri']), result['experiment_id'], result['run_id'])}")
