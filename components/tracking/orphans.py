"""Earlier runs of the same pipeline state: the complete one (nothing to log), one a live track is still logging
(refused), and orphans of killed tracks (marked FAILED, their registrations undone)."""

from __future__ import annotations

import os
import socket
from typing import Any

from components.errors import LnlError
from components.tracking.registry import _unregister
from components.tracking.run_log import COMPLETE_TAG, PROCESS_TAG, STATE_TAG


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
