"""`lnlflow serve`: MLflow's scoring server for the registered champion, from the project's own environment.

`mlflow models serve --env-manager local` starts `uvicorn` by name, so it fails (`exec: uvicorn: not found`) when
the environment's bin folder is not on PATH, e.g. `.venv/bin/mlflow models serve` without an activated venv. This
command puts the running interpreter's bin folder first, checks that the model exists, starts the server, and once
it answers prints the curl line that calls it with the model's own input example (README: Calling the registered
model). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from components.config import load_params
from components.errors import LnlError, first_line

STARTUP_S = 180.0  # the scoring server imports torch and MLflow: ≈ 20 s on a busy 2-core machine


def environment() -> dict[str, str]:
    """os.environ with this interpreter's bin folder (uvicorn, mlflow) first on PATH."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": here if not path else f"{here}{os.pathsep}{path}"}


def model_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def check_registered(client, name: str, alias: str, tracking_uri: str) -> str:
    """The version `alias` points to; LnlError when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        raise LnlError(f"no model registered as '{name}@{alias}' in {tracking_uri} ({first_line(error)}): "
                       "run `make run` (or `lnlflow track`) first") from None


def example_body(uri: str) -> str:
    """The JSON body of one sample from the model's logged serving example, compact for a command line."""
    from mlflow.artifacts import download_artifacts

    path = download_artifacts(artifact_uri=f"{uri}/serving_input_example.json")
    inputs = json.loads(Path(path).read_text())["inputs"]
    return json.dumps({"inputs": inputs[:1]}, separators=(",", ":"))


def curl_line(host: str, port: int, body: str) -> str:
    """The command that calls the server, ready to paste into a shell."""
    return (f"curl -s -H 'Content-Type: application/json' http://{host}:{port}/invocations -d {shlex.quote(body)}")


def serve_command(uri: str, host: str, port: int) -> list[str]:
    mlflow = Path(sys.executable).parent / "mlflow"
    return [str(mlflow) if mlflow.exists() else "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
            "--host", host, "--port", str(port)]


def wait_until_up(process: subprocess.Popen, host: str, port: int, timeout: float = STARTUP_S) -> None:
    """Until GET /ping answers; LnlError if the server exits or stays silent past `timeout`."""
    deadline = time.monotonic() + timeout
    address = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/ping", timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                raise LnlError(f"mlflow models serve exited with status {process.returncode} (its output is above)")
            if time.monotonic() > deadline:
                raise LnlError(f"mlflow models serve did not answer on port {port} within {timeout:.0f} s")
            time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn forks workers), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lnlflow serve", description="Serve the registered model over REST.")
    parser.add_argument("--alias", default="champion", help="registry alias to serve (default: champion)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    from mlflow import MlflowClient

    from components.tracking.experiment import configure

    root = Path.cwd()
    name = load_params(root / "params.yaml").tracking.model_name
    tracking_uri = configure(root)
    version = check_registered(MlflowClient(tracking_uri), name, args.alias, tracking_uri)
    uri = model_uri(name, args.alias)
    body = example_body(uri)
    process = subprocess.Popen(serve_command(uri, args.host, args.port), env=environment(), start_new_session=True)
    try:
        wait_until_up(process, args.host, args.port)
        address = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        print(f"serve: {uri} (version {version}) at http://{args.host}:{args.port}/invocations; Ctrl-C stops it",
              flush=True)
        print(curl_line(address, args.port, body), flush=True)
        process.wait()
        if process.returncode:
            raise LnlError(f"mlflow models serve exited with status {process.returncode}")
    finally:
        stop(process)
