"""The Prefect flow: one task per DVC stage (DVC decides run or skip), then MLflow tracking.

Run it without a server: `python -m flows.pipeline`. Parameters flow one way: a `Params` given to the
flow is written to params.yaml (the previous file is kept as params.yaml.bak), and DVC reads it from there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from components.config import Params, dump_params, load_params
from components.io import read_json, write_text
from components.summary import pct

STAGES = ("data", "noise", "stage1", "stage2", "evaluate")

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, task_run_name="dvc-{stage}")
def run_stage(root: str, stage: str) -> bool:
    """Reproduce one DVC stage; DVC skips it when nothing it depends on changed."""
    from flows.dvc_ops import reproduce

    ran = reproduce(Path(root), stage)
    print(f"{stage}: {'ran' if ran else 'up to date (skipped by DVC)'}")
    return ran


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def track_run(root: str) -> dict[str, Any]:
    """Log the pipeline state to MLflow and register the model (idempotent)."""
    from components.tracking import track

    return track(Path(root), load_params(Path(root) / "params.yaml"))


def results_markdown(metrics: dict[str, Any], noise: dict[str, Any], tracked: dict[str, Any], ran: dict[str, bool]) -> str:
    """The results table shown as a Prefect artifact."""
    auc = "n/a" if metrics["noise_auc"] is None else f"{metrics['noise_auc']:.4f}"
    rows = [
        ("method", metrics["method"]),
        ("noise", f"{noise['kind']}, requested {pct(noise['requested_rate'])}, actual {pct(metrics['actual_noise_rate'])}"),
        ("test accuracy (selected on validation)", pct(metrics["test_acc_selected"])),
        ("test accuracy (last epoch)", pct(metrics["test_acc_last"])),
        ("test accuracy (label-free: lowest-CLID ensemble)", pct(metrics.get("test_acc_labelfree_ensemble"))),
        ("test accuracy (oracle best-on-test; optimistic)", pct(metrics["test_acc_oracle"])),
        ("noise-detection AUC (stage one)", auc),
        ("stages run (others cached)", ", ".join(s for s, r in ran.items() if r) or "none"),
        ("MLflow run", f"{tracked['run_id']} ({'new' if tracked['new_run'] else 'already logged'})"),
    ]
    return "\n".join(["# lnlflow results", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def apply_params(root: Path, params: Params | None) -> Params:
    """Use params.yaml, or write the flow's parameters there first (only if they differ)."""
    path = root / "params.yaml"
    current = load_params(path)
    if params is None or params == current:
        return current
    shutil.copyfile(path, root / "params.yaml.bak")
    write_text(path, dump_params(params))
    print("params.yaml updated from the flow's parameters (previous version: params.yaml.bak)")
    return params


@flow(name="lnlflow-pipeline", log_prints=True)
def pipeline(params: Params | None = None, root: str = ".") -> dict[str, Any]:
    """Run data → noise → stage1 → stage2 → evaluate through DVC, then track the result in MLflow.

    Args:
        params: all pipeline parameters (validated); leave empty to use params.yaml as it is.
        root: the project folder holding dvc.yaml and params.yaml.
    """
    base = Path(root).resolve()
    apply_params(base, params)
    ran: dict[str, bool] = {}
    for stage in STAGES:
        ran[stage] = run_stage(str(base), stage)
    tracked = track_run(str(base))
    metrics = read_json(base / "metrics/eval.json")
    noise = read_json(base / "data/noisy/manifest.json")
    create_markdown_artifact(
        markdown=results_markdown(metrics, noise, tracked, ran), key="lnlflow-results", description="pipeline results"
    )
    return {"metrics": metrics, "tracking": tracked, "stages_ran": [s for s, r in ran.items() if r]}


if __name__ == "__main__":
    from components.errors import LnlError

    try:
        pipeline()
    except LnlError as error:
        raise SystemExit(f"lnlflow flow: error: {error}") from None
