"""Serve the pipeline flow as a scheduled Prefect deployment (cron from params.yaml's `schedule`).

Start a server first (`make prefect-server`), then `make deploy` (this module) keeps serving: scheduled and
UI-triggered runs execute here. Runs read params.yaml at run time unless the UI form overrides it.
"""

from __future__ import annotations

from pathlib import Path

from components.config import load_params
from flows.pipeline import pipeline


def build_deployment(root: Path):
    """The deployment object: the flow, its cron schedule, and the project root as a parameter."""
    schedule = load_params(root / "params.yaml").schedule
    return pipeline.to_deployment(
        name=schedule.deployment,
        cron=schedule.cron,
        parameters={"root": str(root.resolve())},
        description="lnlflow: data → noise → stage1 → stage2 → evaluate (DVC-cached), tracked in MLflow",
    )


if __name__ == "__main__":
    from prefect import serve

    serve(build_deployment(Path.cwd()))
