"""The Prefect flow: one task per DVC stage (DVC decides run or skip), then MLflow tracking.

Run it without a server: `python -m flows.pipeline`. Parameters flow one way: the flow's `overrides`
(dotted keys, e.g. {"stage2.lr": 0.01}) are edited into params.yaml line by line (components.params_file),
and DVC reads them from there. A deployment's run applies only the entries that differ from the
deployment's defaults, so an unchanged form writes nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from components import paths
from components.config import load_params
from components.io import read_json
from components.params_file import apply_overrides
from components.summary import pct


os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, task_run_name="dvc-{stage}")
def run_stage(root: str, stage: str) -> State:
    """Reproduce one DVC stage; DVC skips it when nothing it depends on changed (state "Cached")."""
    from flows.dvc_ops import reproduce

    if reproduce(Path(root), stage):
        return Completed(name="Ran", message="run by DVC", data=True)
    return Completed(name="Cached", message="skipped by DVC: up to date", data=False)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def track_run(root: str) -> dict[str, Any]:
    """Log the pipeline state to MLflow and register the model (idempotent)."""
    from components.tracking.tracker import track

    tracked = track(Path(root), load_params(Path(root) / "params.yaml"))
    get_run_logger().info(tracking_line(tracked))
    return tracked


def tracking_line(tracked: dict[str, Any]) -> str:
    """What track() did, in one line."""
    if not tracked["new_run"]:
        return f"MLflow: this pipeline state is already logged as run {tracked['run_id']}"
    line = f"MLflow run {tracked['run_id']} logged"
    if "version" in tracked:
        verb = "registered" if tracked.get("new_version") else "already registered"
        line += f"; model version {tracked['version']} {verb} (champion: {tracked.get('champion')})"
    return line


def mlflow_run_link(tracked: dict[str, Any], artifact: Path | None = None) -> str:
    """The run (or one of its artifacts) as a markdown link into the MLflow UI (LNLFLOW_MLFLOW_UI_URL), or its id
    (the artifact's path) if the experiment is unknown."""
    run_id, experiment = tracked["run_id"], tracked.get("experiment_id")
    if experiment is None:
        return f"`{artifact or run_id}`"
    from components.tracking.experiment import mlflow_ui_base, ui_url

    url = ui_url(mlflow_ui_base(tracked.get("uri", "")), experiment, run_id, artifact)
    return f"[{artifact.name if artifact else run_id}]({url})"


def markdown_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """A markdown table; `|` inside a cell is escaped."""
    def line(cells: tuple[Any, ...]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(tuple("---" for _ in header)), *map(line, rows)])


def health_cell(health: dict[str, Any] | None) -> str:
    """eval.json's label_health in one table cell: the estimate, its interval, the largest confusion."""
    if not health:
        return "n/a"
    low, high = health["estimated_noise_rate_interval"]
    top = health["top_confusions"][:1]
    pair = f"; most confused: given {top[0]['given']}, truly {top[0]['true']} ({pct(top[0]['share'])})" if top else ""
    return f"{pct(health['estimated_noise_rate'])} (95 % interval {pct(low)} – {pct(high)}){pair}"


def results_markdown(
    metrics: dict[str, Any], noise: dict[str, Any], tracked: dict[str, Any], ran: dict[str, bool]
) -> str:
    """The results table shown as a Prefect artifact."""
    auc = "n/a" if metrics["noise_auc"] is None else f"{metrics['noise_auc']:.4f}"
    rows = [
        ("method", metrics["method"]),
        ("noise", f"{noise['kind']}, requested {pct(noise['requested_rate'])}, "
                  f"actual {pct(metrics['actual_noise_rate'])}"),
        ("wrong labels, estimated from the model's scores", health_cell(metrics.get("label_health"))),
        ("test accuracy (selected on validation)", pct(metrics["test_acc_selected"])),
        ("test accuracy (last epoch)", pct(metrics["test_acc_last"])),
        ("test accuracy (label-free: lowest-CLID ensemble)", pct(metrics.get("test_acc_labelfree_ensemble"))),
        ("test accuracy (oracle best-on-test; optimistic)", pct(metrics["test_acc_oracle"])),
        ("noise-detection AUC (stage one)", auc),
        ("stages run (others cached)", ", ".join(s for s, r in ran.items() if r) or "none"),
        ("MLflow run", f"{mlflow_run_link(tracked)} ({'new' if tracked['new_run'] else 'already logged'})"),
        ("flagged labels", f"`{paths.LABEL_ISSUES}`; with images: {mlflow_run_link(tracked, paths.REVIEW_PAGE)}"),
        ("review round", f"{metrics.get('labels_corrected', 0)} labels corrected, "
                         f"{metrics.get('verified_rows', 0)} verified (data.corrections)"),
    ]
    return "# lnlflow results\n\n" + markdown_table(("result", "value"), rows)


def deployment_defaults() -> dict[str, Any] | None:
    """The `overrides` default of the deployment this flow run belongs to; None outside a deployment."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    if deployment.id is None:
        return None
    with get_client(sync_client=True) as client:
        return client.read_deployment(UUID(deployment.id)).parameters.get("overrides") or {}


def apply_run_overrides(root: Path, overrides: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """Edit params.yaml with the run's overrides: in a deployment run only those that differ from its defaults."""
    if not overrides:
        return {}
    defaults = deployment_defaults()
    if defaults is not None:
        overrides = {key: value for key, value in overrides.items() if key not in defaults or defaults[key] != value}
    return apply_overrides(root / "params.yaml", overrides)


def params_markdown(changes: dict[str, tuple[Any, Any]], text: str) -> str:
    """The parameters a run used: the overrides it applied, and params.yaml as the stages read it."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    applied = markdown_table(("parameter", "before", "after"), [(k, repr(a), repr(b)) for k, (a, b) in changes.items()])
    return "\n\n".join([
        "# lnlflow parameters",
        applied if changes else "No overrides applied: params.yaml as it was.",
        f"params.yaml sha256 `{digest}`",
        f"```yaml\n{text}```",
    ])


@flow(name="lnlflow-pipeline", log_prints=True)
def pipeline(overrides: dict[str, Any] | None = None, root: str = ".") -> dict[str, Any]:
    """Run data → noise → stage1 → stage2 → evaluate through DVC, then track the result in MLflow.

    Args:
        overrides: params.yaml values to set first, by dotted key (e.g. {"stage2.lr": 0.01}); in a deployment
            run only the entries that differ from the deployment's defaults are applied.
        root: the project folder holding dvc.yaml and params.yaml.
    """
    base = Path(root).resolve()
    logger = get_run_logger()
    changes = apply_run_overrides(base, overrides)
    text = (base / "params.yaml").read_text()
    applied = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
    logger.info(f"params.yaml overrides applied: {applied}" if changes else "params.yaml used as it is (no overrides)")
    create_markdown_artifact(markdown=params_markdown(changes, text), key="lnlflow-params",
                             description="parameters this run used")
    ran: dict[str, bool] = {}
    for stage in paths.STAGES:
        state = run_stage(str(base), stage, return_state=True)
        state.result()  # a failed stage stops the flow here
        ran[stage] = state.name == "Ran"
        logger.info(f"{stage}: {'ran' if ran[stage] else 'up to date (skipped by DVC)'}")
    tracked = track_run(str(base))
    metrics = read_json(base / paths.EVAL_METRICS)
    noise = read_json(base / paths.NOISE_MANIFEST)
    create_markdown_artifact(
        markdown=results_markdown(metrics, noise, tracked, ran), key="lnlflow-results", description="pipeline results"
    )
    return {"metrics": metrics, "tracking": tracked, "stages_ran": [s for s, r in ran.items() if r],
            "overrides_applied": {key: new for key, (_, new) in changes.items()}}


if __name__ == "__main__":
    from components.errors import LnlError

    try:
        pipeline()
    except LnlError as error:
        raise SystemExit(f"lnlflow flow: error: {error}") from None
