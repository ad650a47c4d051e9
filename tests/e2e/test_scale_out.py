"""Scaling out on loopback: an MLflow server with proxied artifacts, a DVC remote, a Prefect work pool + worker.

Every server is a real process on 127.0.0.1 (a free port), started in its own process group and stopped in
a `finally`; the workspace is one tiny `dvc repro` shared by the three tests.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from components.config import load_params
from tests.conftest import BIN, make_workspace, run, write_params

STARTUP_TIMEOUT_S = 120  # warm start-up measured at ≈ 22 s (MLflow server), ≈ 16 s (Prefect); a busy box is slower
OUTPUTS = ("data/prepared", "data/noisy", "outputs", "reports", "plots", "metrics")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], health_url: str, log: Path, env: dict[str, str], cwd: Path):
    """Start `cmd` in its own process group, wait until `health_url` answers 200, stop the group on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd[:3]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{cmd[:3]} not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group this test started (servers fork workers), SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
            return


RETRYABLE = {429, 502, 503}  # what Prefect's own client retries; its server sends 503 when SQLite stays busy


def rest(method: str, url: str, *, retries: int = 5, **kwargs) -> httpx.Response:
    """One REST call as Prefect's client makes it: a 429/502/503 is retried with exponential back-off."""
    response = httpx.request(method, url, **kwargs)
    for attempt in range(retries):
        if response.status_code not in RETRYABLE:
            break
        time.sleep(min(2**attempt, 16))
        response = httpx.request(method, url, **kwargs)
    return response


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's bin first on PATH (DVC stages, CLIs), no analytics, plus `extra`."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", **extra}


def checked(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A git + DVC workspace whose tiny pipeline has run, with dvc.lock committed."""
    ws = make_workspace(tmp_path_factory.mktemp("scale") / "ws", git=True)
    run(["dvc", "repro"], ws)
    run(["git", "add", "-A"], ws)
    run(["git", "commit", "-qm", "pipeline outputs"], ws)
    return ws


@pytest.mark.slow
def test_mlflow_server_proxies_artifacts_and_registers(workspace, mlflow_template, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from components.errors import LnlError
    from components.tracking.tracker import track

    db, store, port = tmp_path / "server.db", tmp_path / "store", free_port()
    shutil.copy(mlflow_template, db)  # pre-migrated: the server skips the Alembic migrations
    uri = f"http://127.0.0.1:{port}"
    cmd = [f"{BIN}/mlflow", "server", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(store),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with server(cmd, f"{uri}/health", tmp_path / "mlflow.log", environment(), tmp_path):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        out = run(["lnlflow", "track"], workspace).stdout
        assert "registered as new version 1" in out, out

        params = load_params(workspace / "params.yaml")
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(params.tracking.experiment)
        assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
        (tracked,) = client.search_runs([experiment.experiment_id])
        assert tracked.info.artifact_uri.startswith("mlflow-artifacts:/")
        # Proxied: the files sit under the server's --artifacts-destination; the client wrote nothing locally.
        run_dir = store / tracked.info.artifact_uri.removeprefix("mlflow-artifacts:/")
        assert (run_dir / "plots/confusion_matrix.png").is_file() and (run_dir / "pipeline/dvc.lock").is_file()
        assert filecmp.cmp(run_dir / "pipeline/dvc.lock", workspace / "dvc.lock", shallow=False)
        assert not (workspace / "mlartifacts").exists() and not (workspace / "mlflow.db").exists()

        name = params.tracking.model_name
        version = client.get_model_version_by_alias(name, "champion")
        assert str(version.version) == "1" and version.run_id == tracked.info.run_id
        (model,) = client.search_logged_models([experiment.experiment_id])
        assert model.source_run_id == tracked.info.run_id
        assert model.artifact_location.startswith("mlflow-artifacts:/")
        assert (store / model.artifact_location.removeprefix("mlflow-artifacts:/") / "MLmodel").is_file()
        downloaded = client.download_artifacts(tracked.info.run_id, "reports", str(tmp_path / "down"))
        assert filecmp.cmp(Path(downloaded) / "label_issues.csv", workspace / "reports/label_issues.csv", shallow=False)

        # An experiment created elsewhere with a local artifact path is refused before any run is logged.
        foreign = client.create_experiment("foreign", artifact_location="file:///nonexistent-lnlflow/mlartifacts/1")
        other = params.model_copy(update={"tracking": params.tracking.model_copy(update={"experiment": "foreign"})})
        with pytest.raises(LnlError, match="does not exist on this machine"):
            track(workspace, other)
        assert client.search_runs([foreign]) == []


@pytest.mark.slow
def test_dvc_remote_push_then_pull_into_a_fresh_clone(workspace, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], workspace)
    run(["git", "commit", "-qam", "dvc remote"], workspace)
    run(["dvc", "push"], workspace)
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    assert not (clone / "metrics/eval.json").exists()  # outputs are not in git
    # Targeted: a bare `dvc pull` also tries compare/dvc.yaml, whose stages never ran here (no lock entries).
    run(["dvc", "pull", "dvc.yaml"], clone)
    for out in OUTPUTS:
        mine = sorted(p.relative_to(workspace) for p in (workspace / out).rglob("*") if p.is_file())
        theirs = sorted(p.relative_to(clone) for p in (clone / out).rglob("*") if p.is_file())
        assert mine and mine == theirs, out
        assert all(filecmp.cmp(workspace / p, clone / p, shallow=False) for p in mine), out
    status = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], clone).stdout)
    assert status == {"inputs": ["always changed"]}, status  # the input fingerprints are re-taken on every repro
    assert "in sync" in run(["dvc", "status", "--cloud", "dvc.yaml"], clone).stdout


def test_tracking_uri_kinds():
    from components.tracking.experiment import _local_path, is_server

    assert is_server("http://10.0.0.5:5000") and is_server("HTTPS://mlflow.example.org")
    assert not is_server("sqlite:////tmp/mlflow.db") and not is_server("databricks")
    assert _local_path("file:///srv/ml%20artifacts/1") == Path("/srv/ml artifacts/1")
    assert _local_path("/srv/mlartifacts/1") == Path("/srv/mlartifacts/1")
    assert _local_path("mlflow-artifacts:/1") is None and _local_path("s3://bucket/lnlflow") is None


def test_deploy_pool_needs_a_server(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import main

    write_params(tmp_path)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), contextlib.chdir(tmp_path):
        with pytest.raises(SystemExit, match="needs a running Prefect server"):
            main(["--pool", "lnlflow"])
    closed = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    with temporary_settings(updates={PREFECT_API_URL: closed}), contextlib.chdir(tmp_path):
        with pytest.raises(SystemExit, match="cannot reach the Prefect server"):
            main(["--pool", "lnlflow"])


@pytest.mark.slow
def test_prefect_worker_runs_the_deployment_from_a_process_pool(workspace, mlflow_template, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import main

    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)  # with its DVC cache: the run restores the removed outputs from the run-cache
    for out in OUTPUTS:
        shutil.rmtree(ws / out)
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = environment(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api,
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    cmd = [f"{BIN}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    with server(cmd, f"{api}/health", tmp_path / "prefect.log", env, tmp_path):
        with temporary_settings(updates={PREFECT_API_URL: api}), contextlib.chdir(ws):
            with pytest.raises(SystemExit, match="work pool 'nowhere' not found"):
                main(["--pool", "nowhere"])

        checked([f"{BIN}/prefect", "work-pool", "create", "lnlflow-test", "--type", "process"], tmp_path, env)
        out = checked([sys.executable, "-m", "flows.deploy", "--pool", "lnlflow-test"], ws, env)
        name = f"lnlflow-pipeline/{load_params(ws / 'params.yaml').schedule.deployment}"
        assert f"deployment '{name}'" in out and "work pool 'lnlflow-test'" in out, out
        created = checked([f"{BIN}/prefect", "deployment", "run", name], tmp_path, env)
        flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", created).group(1)

        # One polling round picks up the run scheduled now; the worker exits once that run has finished.
        worker_log = tmp_path / "worker.log"
        with worker_log.open("w") as log:
            worker = subprocess.Popen([f"{BIN}/prefect", "worker", "start", "--pool", "lnlflow-test", "--run-once"],
                                      cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            worker.wait(timeout=300)
        finally:
            stop(worker)
        flow_run = rest("GET", f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
        assert flow_run["state"]["type"] == "COMPLETED", f"{flow_run['state']}:\n{worker_log.read_text()[-4000:]}"
    assert (ws / "metrics/eval.json").is_file() and (ws / "outputs/stage2").is_dir()
    assert (ws / "plots/confusion_matrix.png").is_file()
