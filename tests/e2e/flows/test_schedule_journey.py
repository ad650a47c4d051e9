"""Journey: a real Prefect server, the served deployment (`python -m flows.deploy`), cron runs that fire, form
overrides that edit one line of params.yaml, and a server restart the serving process lives through.

The tests share one server and one serving process and run in file order (each builds on the last).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from components.params_file import apply_overrides
from tests.conftest import BIN, ROOT, TINY, make_workspace
from tests.e2e.test_scale_out import environment, free_port, rest, stop

pytestmark = pytest.mark.slow

DEPLOYMENT = "lnlflow-pipeline/lnlflow-nightly"
STAGES = ("data", "noise", "stage1", "stage2", "evaluate")
ALWAYS = {"inputs": "Ran"}  # dvc.yaml: always_changed (fingerprints the files params.yaml names)


class Journey:
    """The processes and paths the tests share."""

    def __init__(self, tmp: Path, mlflow_template: Path):
        self.tmp, self.port = tmp, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.ws = make_workspace(tmp / "ws", git=False)
        shutil.copy(ROOT / "params.yaml", self.ws / "params.yaml")  # the shipped file: comments, quoting, runs
        tiny = {f"{section}.{key}": value for section, values in TINY.items() for key, value in values.items()}
        apply_overrides(self.ws / "params.yaml", {**tiny, "schedule.cron": "* * * * *"})
        (self.ws / "params.yaml").chmod(0o640)
        shutil.copy(mlflow_template, tmp / "mlflow.db")
        self.env = environment(PREFECT_HOME=str(tmp / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                               PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5", PREFECT_RUNNER_POLL_FREQUENCY="5",
                               MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}")
        self.server = self.serve = None

    def start_server(self) -> None:
        log = (self.tmp / "server.log").open("a")
        self.server = subprocess.Popen(
            [f"{BIN}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"],
            cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait(lambda: self.ok("/health"), 120, "server healthy", lambda: (self.tmp / "server.log").read_text())

    def start_serving(self) -> None:
        log = (self.tmp / "serve.log").open("w")
        self.serve = subprocess.Popen([sys.executable, "-m", "flows.deploy"], cwd=self.ws,
                                      env={**self.env, "PREFECT_API_URL": self.api},
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def serve_log(self) -> str:
        return (self.tmp / "serve.log").read_text()

    def ok(self, path: str) -> bool:
        try:
            return httpx.get(self.api + path, timeout=5).is_success
        except httpx.HTTPError:
            return False

    def post(self, path: str, body: dict) -> dict | list:
        response = rest("POST", self.api + path, json=body, timeout=30)
        assert response.is_success, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def deployment(self) -> dict:
        return rest("GET", f"{self.api}/deployments/name/{DEPLOYMENT}", timeout=10).json()

    def flow_runs(self) -> list[dict]:
        body = {"deployments": {"id": {"any_": [self.deployment()["id"]]}}, "limit": 200, "offset": 0,
                "sort": "EXPECTED_START_TIME_ASC"}
        return self.post("/flow_runs/filter", body)

    def run(self, overrides: dict | None) -> dict:
        """Create a run of the deployment (as the UI form does) and wait until it finishes."""
        params = {"overrides": overrides} if overrides is not None else {}
        run_id = self.post(f"/deployments/{self.deployment()['id']}/create_flow_run", {"parameters": params})["id"]
        return self.finished(run_id)

    def finished(self, run_id: str, timeout: float = 240) -> dict:
        def final():
            run = rest("GET", f"{self.api}/flow_runs/{run_id}", timeout=10).json()
            return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        run = wait(final, timeout, f"flow run {run_id} finished", self.serve_log)
        assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{self.serve_log()[-4000:]}"
        return run

    def stage_states(self, run_id: str) -> dict[str, str]:
        """dvc-<stage> task run → its state name (Ran / Cached)."""
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 50, "offset": 0, "sort": "EXPECTED_START_TIME_DESC"}
        return {t["name"].removeprefix("dvc-"): t["state"]["name"] for t in self.post("/task_runs/filter", body)
                if t["name"].startswith("dvc-")}

    def artifact(self, run_id: str, key: str) -> str:
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}, "limit": 5, "offset": 0}
        return self.post("/artifacts/filter", body)[0]["data"]


def wait(check, timeout: float, what: str, log=lambda: ""):
    """Poll `check` once a second until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s:\n{log()[-4000:]}")
        time.sleep(1)
    return result


@pytest.fixture(scope="module")
def journey(tmp_path_factory, mlflow_template):
    state = Journey(tmp_path_factory.mktemp("journey"), mlflow_template)
    try:
        state.start_server()
        state.start_serving()
        wait(lambda: state.ok(f"/deployments/name/{DEPLOYMENT}"), 120, "deployment registered", state.serve_log)
        yield state
    finally:
        children = children_of(state.serve.pid) if state.serve else []  # the serving child: its own group
        for proc in (state.serve, state.server):
            if proc is not None:
                stop(proc)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_cron_schedule_creates_runs_that_complete(journey):
    scheduled = wait(lambda: [r for r in journey.flow_runs() if r["state"]["type"] == "SCHEDULED"], 90,
                     "SCHEDULED runs", journey.serve_log)
    assert all(r["auto_scheduled"] for r in scheduled)
    run = journey.finished(scheduled[0]["id"], timeout=240)  # the next minute, then the tiny pipeline
    assert journey.stage_states(run["id"]) == {**ALWAYS, **dict.fromkeys(STAGES, "Ran")}
    results = journey.artifact(run["id"], "lnlflow-results")
    assert "| result | value |" in results and "/#/experiments/" in results


def test_form_applies_only_what_changed(journey):
    path = journey.ws / "params.yaml"
    journey.post(f"/deployments/{journey.deployment()['id']}/pause_deployment", {})  # no cron run in between
    wait(lambda: not any(r["state"]["type"] in ("PENDING", "RUNNING") for r in journey.flow_runs()), 240,
         "idle", journey.serve_log)
    defaults = journey.deployment()["parameters"]["overrides"]
    # Edited after deploying: the unchanged form (which still says 0.5) must not undo it.
    path.write_text(path.read_text().replace("  threshold: 0.5", "  threshold: 0.6"))
    edited = path.read_text()
    unchanged = journey.run(defaults)
    assert path.read_text() == edited
    assert journey.stage_states(unchanged["id"]) == {**ALWAYS, **dict.fromkeys(STAGES, "Cached"), "evaluate": "Ran"}
    assert "No overrides applied" in journey.artifact(unchanged["id"], "lnlflow-params")

    one_field = journey.run({**defaults, "stage2.lr": 0.002})
    assert path.read_text() == edited.replace("  lr: 0.001\n  lr_min", "  lr: 0.002\n  lr_min")
    assert path.stat().st_mode & 0o777 == 0o640 and not (journey.ws / "params.yaml.bak").exists()
    assert journey.stage_states(one_field["id"]) == {**ALWAYS, **dict.fromkeys(STAGES[:3], "Cached"),
                                                     "stage2": "Ran", "evaluate": "Ran"}
    assert "| stage2.lr | 0.001 | 0.002 |" in journey.artifact(one_field["id"], "lnlflow-params")


def test_serving_survives_a_server_restart(journey):
    stop(journey.server)
    wait(lambda: "unreachable" in journey.serve_log(), 60, "outage reported", journey.serve_log)
    journey.start_server()
    wait(lambda: "is back" in journey.serve_log(), 60, "recovery reported", journey.serve_log)
    assert journey.serve.poll() is None
    before = (journey.ws / "params.yaml").read_text()
    again = journey.run(None)  # created before the deployment is registered again: the same defaults apply
    assert (journey.ws / "params.yaml").read_text() == before
    assert journey.stage_states(again["id"]) == {**ALWAYS, **dict.fromkeys(STAGES, "Cached")}
    log = journey.serve_log()
    assert "Traceback" not in log, log[-4000:]
    outage = [line for line in log.splitlines() if line.startswith("flows.deploy: ")]
    assert len(outage) == 3, outage  # serving, unreachable, back
