"""`make screenshots`: the pages lnlflow users live in, captured in headless Chromium into docs/img/.

It drives the real servers on loopback, against the project in the current folder:
1. `dvc repro` and `lnlflow track` (both no-ops when nothing changed), so MLflow holds a run and a model;
2. an MLflow UI on the project's mlflow.db;
3. a Prefect server with its own PREFECT_HOME under .lnlflow/, the served deployment (`python -m flows.deploy`)
   and one run of it, so the flow run page and the deployment's upcoming runs have something to show;
4. `lnlflow review serve` on the project's label-issue report (it only reads: no decision is made);
5. Chromium (Debian's package: `apt-get install chromium`), driven by Playwright (`make screenshots` installs the
   Python package; it uses the system Chromium, it downloads no browser), renders each page to a PNG after the
   single-page app has had real time to fetch and draw (MLflow's charts never draw under Chromium's virtual time).

`python docs/screenshots.py review` takes only the review page (docs/img/review_page.png), after `dvc repro`.

Every server is stopped by its PID at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path.cwd()
OUT = ROOT / "docs" / "img"
BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    """Poll `url` until it answers 200, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(1)
    raise SystemExit(f"screenshots: error: {url} did not answer within {timeout:.0f} s")


def api(base: str, path: str, body: dict | None = None, patience: float = 120) -> object:
    """A JSON call to the Prefect API (POST when `body` is given); a busy server's 5xx is retried for `patience` s."""
    data = None if body is None else json.dumps(body).encode()
    deadline = time.monotonic() + patience
    while True:
        request = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code < 500 or time.monotonic() > deadline:
                raise
        time.sleep(2)


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A background process in its own session, killed with its children on exit."""
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


class Camera:
    """One headless Chromium; `shoot` opens a page, waits, closes MLflow's assistant panel and saves a PNG."""

    def __init__(self, chromium: str) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)

    def shoot(self, url: str, name: str, wait_ms: int = 12000) -> Path:
        target = OUT / f"{name}.png"
        page = self._browser.new_page(viewport={"width": 1440, "height": 1000})
        try:
            page.goto(url)
            page.wait_for_timeout(wait_ms)
            close = page.locator("button[aria-label='Close']")
            if close.count():
                close.first.click()
                page.wait_for_timeout(1500)
            page.screenshot(path=str(target))
        finally:
            page.close()
        print(f"  {target.relative_to(ROOT)}  ←  {url}")
        return target

    def close(self) -> None:
        self._browser.close()
        self._playwright.stop()


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshots: error: chromium not found: install Debian's package (apt-get install chromium)")
    OUT.mkdir(parents=True, exist_ok=True)
    work = ROOT / ".lnlflow" / "screenshots"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}")

    subprocess.run(["dvc", "repro"], cwd=ROOT, env=env, check=True)
    if sys.argv[1:] == ["review"]:
        camera = Camera(chromium)
        try:
            shoot_review(camera, env, work)
        finally:
            camera.close()
        return
    os.environ.setdefault("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    from components.config import load_params
    from components.tracking import track

    params = load_params(ROOT / "params.yaml")
    tracked = track(ROOT, params)  # this pipeline state's run (logged now, or found)
    print(f"screenshots: MLflow run {tracked['run_id']}")

    model = params.tracking.model_name
    version = tracked["version"]

    mlflow_port, prefect_port = free_port(), free_port()
    mlflow_url, prefect_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}"
    prefect_env = {
        **env, "PREFECT_HOME": str(work / "prefect"), "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_UI_API_URL": f"{prefect_url}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    print("screenshots: starting MLflow UI and Prefect server on loopback …")
    with (
        process([str(BIN / "mlflow"), "ui", "--backend-store-uri", env["MLFLOW_TRACKING_URI"], "--host", "127.0.0.1",
                 "--port", str(mlflow_port)], env, work / "mlflow.log"),
        process([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                prefect_env, work / "prefect-server.log"),
    ):
        wait_http(f"{prefect_url}/api/health", 180)
        with process([sys.executable, "-m", "flows.deploy"], prefect_env, work / "serve.log"):
            deployment = wait_deployment(prefect_url, params.schedule.deployment, 180)
            flow_run = api(prefect_url, f"/api/deployments/{deployment['id']}/create_flow_run", {})
            finished = wait_flow_run(prefect_url, flow_run["id"], 900)
            print(f"screenshots: flow run {finished['name']} ended {finished['state']['type']}")
            wait_http(f"{mlflow_url}/health", 180)
            camera = Camera(chromium)
            try:
                take(camera, mlflow_url, prefect_url, tracked["experiment_id"], tracked["run_id"], model, version,
                     deployment["id"], flow_run["id"])
                shoot_review(camera, env, work)
            finally:
                camera.close()


def take(camera: Camera, mlflow_url: str, prefect_url: str, experiment_id: str, run_id: str, model: str,
         version: str, deployment_id: str, flow_run_id: str) -> None:
    """The pages the README shows."""
    from components.tracking import ui_url

    run_url = ui_url(mlflow_url, experiment_id, run_id)  # the model-training view
    page, query = run_url.split("?")
    camera.shoot(run_url, "mlflow_run")
    camera.shoot(f"{page}/model-metrics?{query}", "mlflow_curves", 20000)
    camera.shoot(f"{mlflow_url}/#/models/{model}/versions/{version}?{query}", "mlflow_registered_model")
    camera.shoot(f"{prefect_url}/runs/flow-run/{flow_run_id}?tab=Task+Runs", "prefect_flow_run")
    camera.shoot(f"{prefect_url}/deployments/deployment/{deployment_id}?tab=Upcoming", "prefect_deployment")
    camera.shoot(f"{prefect_url}/deployments/deployment/{deployment_id}/run", "prefect_run_form")


def shoot_review(camera: Camera, env: dict[str, str], work: Path) -> None:
    """`lnlflow review serve` (this checkout's) on a free loopback port, its page as the reviewer first sees it."""
    port = free_port()
    command = [sys.executable, "-m", "components.cli", "review", "serve", "--port", str(port)]
    with process(command, env, work / "review.log"):
        wait_http(f"http://127.0.0.1:{port}/api/progress", 120)
        camera.shoot(f"http://127.0.0.1:{port}/", "review_page", 4000)


def wait_deployment(base: str, name: str, timeout: float) -> dict:
    """The served deployment, once `flows.deploy` has registered it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api(base, "/api/deployments/filter", {"deployments": {"name": {"any_": [name]}}, "limit": 1, "offset": 0})
        if found:
            return found[0]
        time.sleep(2)
    raise SystemExit(f"screenshots: error: deployment '{name}' was not served within {timeout:.0f} s (.lnlflow/screenshots/serve.log)")


def wait_flow_run(base: str, run_id: str, timeout: float) -> dict:
    """Wait until the flow run reaches a final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = api(base, f"/api/flow_runs/{run_id}")
        if flow_run["state"] and flow_run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return flow_run
        time.sleep(3)
    raise SystemExit(f"screenshots: error: flow run {run_id} did not finish within {timeout:.0f} s")


if __name__ == "__main__":
    main()
