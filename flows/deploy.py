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
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from components.config import load_params
from components.errors import LnlError
from components.params_file import flatten_params
from flows.pipeline import pipeline

ENTRYPOINT = "flows/pipeline.py:pipeline"
DESCRIPTION = "lnlflow: data → noise → stage1 → stage2 → evaluate (DVC-cached), tracked in MLflow"
CHECK_SECONDS = 5.0  # how often the serving process checks that the server still knows the deployment


def deployment_parameters(root: Path) -> dict[str, Any]:
    """The deployment's defaults: the project root, and params.yaml now as dotted-key overrides (the form)."""
    return {"root": str(root.resolve()), "overrides": flatten_params(load_params(root / "params.yaml"))}


def build_deployment(root: Path):
    """The served deployment: the flow, its cron schedule, and params.yaml's values as the form's defaults."""
    schedule = load_params(root / "params.yaml").schedule
    return pipeline.to_deployment(
        name=schedule.deployment,
        cron=schedule.cron,
        parameters=deployment_parameters(root),
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


def _problem(url: str, deployment_id: Any = None) -> str | None:
    """Why the server cannot serve runs now (unreachable, failing, or it lost the deployment), or None."""
    import httpx

    path = f"/deployments/{deployment_id}" if deployment_id else "/health"
    try:
        response = httpx.get(url + path, timeout=CHECK_SECONDS)
    except httpx.HTTPError as error:
        return f"unreachable ({type(error).__name__})"
    if response.status_code == 404 and deployment_id:
        return "back without this deployment"
    return None if response.is_success else f"answering HTTP {response.status_code}"


class _QuietOutage(logging.Filter):
    """Drop Prefect's own tracebacks for a lost connection: the serve loop reports an outage in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        import httpx

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (httpx.TransportError, OSError))


async def _serve_until_outage(deployment, url: str) -> str:
    """Register `deployment` and serve it (one run at a time) until the server fails twice in a row."""
    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True, limit=1)
    deployment_id = await runner.aadd_deployment(deployment)
    serving = asyncio.create_task(runner.start())
    failures: list[str] = []
    while len(failures) < 2:
        await asyncio.sleep(CHECK_SECONDS)
        if serving.done():  # the runner gave up on its own
            return f"stopped polling ({serving.exception() or 'no error'})"
        problem = await asyncio.to_thread(_problem, url, deployment_id)
        failures = [*failures, problem] if problem else []
    runner.pause_on_shutdown = False  # the server cannot take the pause; the deployment stays as it was
    await runner.astop()
    await asyncio.gather(serving, return_exceptions=True)
    return failures[-1]


def serve_forever(deployment, url: str) -> None:
    """Serve `deployment`; on an outage print one line, wait for the server, then register and serve again."""
    for handler in logging.getLogger("prefect").handlers:
        handler.addFilter(_QuietOutage())
    label = f"'{pipeline.name}/{deployment.name}'"
    print(f"flows.deploy: serving {label} from {Path.cwd()} on {url}, one run at a time (Ctrl-C stops)", flush=True)
    while True:
        stopped = ""
        problem = _problem(url)
        if problem is None:
            problem = asyncio.run(_serve_until_outage(deployment, url))
            stopped = "; serving stopped (with any run in progress)"
        print(f"flows.deploy: Prefect server at {url} {problem}{stopped}; retrying every {CHECK_SECONDS:g} s",
              flush=True)
        while _problem(url):
            time.sleep(CHECK_SECONDS)
        print(f"flows.deploy: Prefect server at {url} is back; registering {label} again", flush=True)


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
        url = _api_url()
        deployment = build_deployment(root)
    except LnlError as error:
        raise SystemExit(f"flows.deploy: error: {error}") from None
    try:
        serve_forever(deployment, url)
    except KeyboardInterrupt:
        print("flows.deploy: stopped", flush=True)


if __name__ == "__main__":
    main()
