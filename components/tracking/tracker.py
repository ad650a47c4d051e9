"""`track`: log one pipeline state as one MLflow run unless it is logged already. A failed or interrupted track
ends its run FAILED or KILLED and takes back what it registered, so it blocks nothing."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.config import Params
from components.errors import LnlError, first_line
from components.tracking.experiment import _experiment_id, configure
from components.tracking.inputs import read_inputs
from components.tracking.orphans import _logged
from components.tracking.pipeline_state import check_fresh, lock_state, locked_params
from components.tracking.registry import _aliases, _champion, _unregister
from components.tracking.run_log import COMPLETE_TAG, _log_run, _start


class TrackInterrupted(KeyboardInterrupt):
    """Ctrl-C inside the MLflow run: the run is marked KILLED and nothing is registered; the message says so."""


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
