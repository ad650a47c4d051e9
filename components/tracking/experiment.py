"""Where runs go: the tracking URI, the experiment (created in the UI's model-training mode), links into the UI."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from components.errors import LnlError
from components.mlflow_home import default_tracking_uri, reanchor

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # the UI's "machine learning" mode, not GenAI


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
