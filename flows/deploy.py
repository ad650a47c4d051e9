"""Deploy the pipeline flow to Prefect (cron from params.yaml's `schedule`), in one of two ways.

- `python -m flows.deploy` (`make deploy`): serve the deployment from this process; scheduled and UI-triggered
  runs execute here.
- `python -m flows.deploy --pool lnlflow` (`make deploy-pool`): register the flow, loaded from this project
  folder, with a process work pool; `prefect worker start --pool lnlflow` (`make worker`), on any machine that
  has the project at the same path and reaches the server, executes the runs.

Start a server first (`make prefect-server`) and point `PREFECT_API_URL` at it. Runs read params.yaml at run
time unless the UI form overrides it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from components.config import load_params
from components.errors import LnlError
from flows.pipeline import pipeline

ENTRYPOINT = "flows/pipeline.py:pipeline"
DESCRIPTION = "lnlflow: data → noise → stage1 → stage2 → evaluate (DVC-cached), tracked in MLflow"


def build_deployment(root: Path):
    """The served deployment: the flow, its cron schedule, and the project root as a parameter."""
    schedule = load_params(root / "params.yaml").schedule
    return pipeline.to_deployment(
        name=schedule.deployment,
        cron=schedule.cron,
        parameters={"root": str(root.resolve())},
        description=DESCRIPTION,
    )


def _check_pool(pool: str) -> None:
    """Stop with one message unless a server is configured and reachable, and `pool` there is a process pool."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:  # a temporary server would vanish with this process, and no worker could reach it
        raise LnlError("--pool needs a running Prefect server: start one (`make prefect-server`) and set "
                       "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api")
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
        parameters={"root": source},
        job_variables={"working_dir": source},
        description=DESCRIPTION,
    )
    return str(deployment.apply())


def main(argv: list[str] | None = None) -> None:
    """`python -m flows.deploy [--pool NAME]`: serve here, or register with a work pool and return."""
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--pool", help="register with this process work pool (run by `prefect worker start --pool "
                                       "NAME`) instead of serving from this process")
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if args.pool:
            deployment_id = deploy_to_pool(root, args.pool)
            print(f"deployment '{pipeline.name}/{load_params(root / 'params.yaml').schedule.deployment}' "
                  f"({deployment_id}) registered with work pool '{args.pool}'")
            return
        deployment = build_deployment(root)
    except LnlError as error:
        raise SystemExit(f"flows.deploy: error: {error}") from None
    from prefect import serve

    serve(deployment)


if __name__ == "__main__":
    main()
