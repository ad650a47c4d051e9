"""Keep a served deployment alive across Prefect server outages.

Prefect 3.8.8's `serve()` rides out a short outage with pages of tracebacks, loses flow-run cancellation for
good once its observer gives up, and never notices a server that came back without the deployment. So the
serving runs in a child process (its own process group, with the flow runs it starts), and this process
watches the server: on an outage it prints one line and stops the child; once the server answers again it
prints one line and starts a fresh child, which registers the deployment again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

CHECK_SECONDS = 5.0  # how often a server that is down is checked again
WATCH_SECONDS = 2.0  # how often the server is checked while serving: two failures in a row stop the child before
# Prefect's own retry loops there (10 s apart by default) start printing tracebacks
STOP_GRACE_SECONDS = 20.0  # how long the serving child may take to pause its schedule and stop


def problem(url: str, path: str = "/health") -> str | None:
    """Why the server at `url` cannot serve runs now (unreachable, failing, or `path` not found), or None."""
    import httpx

    try:
        response = httpx.get(url + path, timeout=CHECK_SECONDS)
    except httpx.HTTPError as error:
        return f"is unreachable ({type(error).__name__})"
    if response.status_code == 404 and path != "/health":
        return "is back without this deployment"
    return None if response.is_success else f"answers HTTP {response.status_code}"


class _QuietOutage(logging.Filter):
    """Drop Prefect's own tracebacks for a lost connection: the supervisor reports an outage in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        import httpx
        from websockets.exceptions import WebSocketException

        error = record.exc_info[1] if record.exc_info else None
        lost = (httpx.TransportError, ConnectionError, WebSocketException)
        refused_all = isinstance(error, OSError) and str(error).startswith("Multiple exceptions")  # every address
        return not (isinstance(error, lost) or refused_all)


def quiet_outage_logs() -> None:
    """Install the filter on Prefect's handlers and on the loggers that report a lost server."""
    quiet = _QuietOutage()
    names = ("prefect", "prefect.runner", "prefect.FlowRunCancellingObserver", "prefect.events.clients", "asyncio")
    for name in names:
        logger = logging.getLogger(name)
        logger.addFilter(quiet)
        for handler in logger.handlers:
            handler.addFilter(quiet)


def _interrupt(*_: Any) -> None:
    """SIGTERM stops the supervisor like Ctrl-C."""
    raise KeyboardInterrupt


def _stop(child: subprocess.Popen, *, graceful: bool) -> None:
    """Stop the serving child and the flow runs it started (its process group). Graceful: Ctrl-C first, so it
    pauses its schedule; not when the server is gone (the pause could only fail, loudly)."""
    if graceful:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _watch(child: subprocess.Popen, url: str, deployment_path: str) -> str | None:
    """Wait until the server fails twice in a row (returns why) or the child exits (returns None)."""
    registered, failures = False, 0
    while child.poll() is None:
        time.sleep(WATCH_SECONDS)
        found = problem(url, deployment_path) if registered else problem(url)
        if found is None and not registered:
            registered = problem(url, deployment_path) is None
        failures = failures + 1 if found else 0
        if failures == 2 or found and "without" in found:
            return found
    return None


def serve_forever(url: str, label: str, deployment_path: str, child_cmd: list[str], env: dict[str, str]) -> None:
    """Run `child_cmd` (the serving process) while the server answers; report each outage in one line."""
    signal.signal(signal.SIGTERM, _interrupt)
    child = None
    try:
        while True:
            found = problem(url)
            if found is None:
                child = subprocess.Popen(child_cmd, env=env, start_new_session=True)
                found = _watch(child, url, deployment_path) or problem(url)
                if found is None:  # it stopped on its own while the server is fine: a supervisor should know
                    raise SystemExit(f"flows.deploy: error: serving {label} stopped (exit code {child.returncode}); "
                                     "see the lines above")
                _stop(child, graceful=False)
                found += "; serving stopped (with any run in progress)"
            print(f"flows.deploy: Prefect server at {url} {found}; retrying every {CHECK_SECONDS:g} s", flush=True)
            while problem(url):
                time.sleep(CHECK_SECONDS)
            print(f"flows.deploy: Prefect server at {url} is back; registering {label} again", flush=True)
    except KeyboardInterrupt:
        if child is not None and child.poll() is None:
            _stop(child, graceful=True)
        print("flows.deploy: stopped", flush=True)
    finally:
        if child is not None and child.poll() is None:
            _stop(child, graceful=False)
