"""Deploy the pipeline flow to Prefect (cron from params.yaml's `schedule`), in one of two ways.

- `python -m flows.deploy` (`make deploy`): serve the deployment from this process; scheduled and UI-triggered
  runs execute here, one at a time (DVC locks the workspace). If the server goes away, serving stops with one
  line, and resumes (the deployment registered again) once the server answers.
- `python -m flows.deploy --pool lnlflow` (`make deploy-pool`): register the flow, loaded from this project
  folder, with a process work pool; `prefect worker start --pool lnlflow` (`make worker`), on any machine that
  has the project at the same path and reaches the server, executes the runs.

Start a server first (`make prefect-server`) and point `PREFECT_API_URL` at it. The deployment's `overrides`
default is params.yaml as it is when deploying; a run applies only the form entries that differ from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from components.config import load_params
from components.errors import LnlError
from components.params_file import flatten_params
from flows.pipeline import pipeline
from flows.supervise import quiet_outage_logs, serve_forever

ENTRYPOINT = "flows/pipeline.py:pipeline"
SERVE_PARAMETERS = "LNLFLOW_SERVE_PARAMETERS"  # the supervisor's deployment defaults, for its serving child
DESCRIPTION = "lnlflow: data → noise → stage1 → stage2 → evaluate (DVC-cached), tracked in MLflow"


def deployment_parameters(root: Path) -> dict[str, Any]:
    """The deployment's defaults: the project root, and params.yaml now as dotted-key overrides (the form)."""
    return {"root": str(root.resolve()), "overrides": flatten_params(load_params(root / "params.yaml"))}


def build_deployment(root: Path, parameters: dict[str, Any] | None = None):
    """The served deployment: the flow, its cron schedule, and params.yaml's values as the form's defaults."""
    schedule = load_params(root / "params.yaml").schedule
    return pipeline.to_deployment(
        name=schedule.deployment,
        cron=schedule.cron,
        parameters=parameters or deployment_parameters(root),
        description=DESCRIPTION,
    )


def _api_url() -> str:
    """PREFECT_API_URL, or one error: a temporary server would vanish with this process (and never schedule)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise LnlError("deploying needs a running Prefect server: start one (`make prefect-server`) and set "
                       "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api")
    return url.rstrip("/")


def _check_pool(pool: str) -> None:
    """Stop with one message unless a server is configured and reachable, and `pool` there is a process pool."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    url = _api_url()
    with get_client(sync_client=True) as client:
        try:
            work_pool = client.read_work_pool(pool)
        except ObjectNotFound:
            raise LnlError(
                f"Prefect work pool '{pool}' not found at {url}: "
                f"create it with `prefect work-pool create {pool} --type process`"
            ) from None
        except httpx.HTTPError as error:
            raise LnlError(f"cannot reach the Prefect server at {url} (PREFECT_API_URL): {error}") from None
    if work_pool.type != "process":
        raise LnlError(f"Prefect work pool '{pool}' has type '{work_pool.type}'; the pipeline needs a 'process' pool")


def deploy_to_pool(root: Path, pool: str) -> str:
    """Register the flow, loaded from `root` at run time, with the process work pool `pool`; returns its id."""
    schedule = load_params(root / "params.yaml").schedule
    _check_pool(pool)
    source = str(root.resolve())
    # Not `flow.deploy()`: in prefect 3.8.8 it first lists the pool's workers with null offset/limit, which the
    # 3.8.8 server rejects (422); `to_deployment(...).apply()` registers the same deployment without that call.
    deployment = pipeline.from_source(source=source, entrypoint=ENTRYPOINT).to_deployment(
        name=schedule.deployment,
        work_pool_name=pool,
        cron=schedule.cron,
        parameters=deployment_parameters(root),
        job_variables={"working_dir": source},
        description=DESCRIPTION,
    )
    return str(deployment.apply())


def main(argv: list[str] | None = None) -> None:
    """`python -m flows.deploy [--pool NAME]`: serve here, or register with a work pool and return."""
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--pool", help="register with this process work pool (run by `prefect worker start --pool "
                                       "NAME`) instead of serving from this process")
    parser.add_argument("--serve-here", action="store_true", help=argparse.SUPPRESS)  # the supervised child
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if args.pool:
            deployment_id = deploy_to_pool(root, args.pool)
            print(f"deployment '{pipeline.name}/{load_params(root / 'params.yaml').schedule.deployment}' "
                  f"({deployment_id}) registered with work pool '{args.pool}'")
            return
        url = _api_url()
        # A served deployment keeps the defaults it started with when registered again after an outage: a run
        # created before must compare its form with the same defaults (flows.pipeline.apply_run_overrides).
        parameters = json.loads(os.environ.get(SERVE_PARAMETERS) or "null") or deployment_parameters(root)
        deployment = build_deployment(root, parameters)
    except LnlError as error:
        raise SystemExit(f"flows.deploy: error: {error}") from None
    if args.serve_here:
        from prefect import serve

        quiet_outage_logs()
        serve(deployment, limit=1, print_starting_message=False)  # one run at a time: DVC locks the workspace
        return
    label = f"'{pipeline.name}/{deployment.name}'"
    print(f"flows.deploy: serving {label} (cron '{deployment.schedules[0].schedule.cron}') from {root}: "
          f"its runs on {url} execute here, one at a time (Ctrl-C stops)", flush=True)
    serve_forever(url, label, f"/deployments/name/{pipeline.name}/{deployment.name}",
                  [sys.executable, "-m", "flows.deploy", "--serve-here"],
                  {**os.environ, SERVE_PARAMETERS: json.dumps(parameters)})


if __name__ == "__main__":
    main()
