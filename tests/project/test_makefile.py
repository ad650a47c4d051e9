"""The Makefile's command lines, as `make -n` prints them (nothing is run)."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import ROOT

TARGETS = {"deploy": "python -m flows.deploy", "deploy-pool": "python -m flows.deploy --pool lnlflow",
           "worker": "prefect worker start --pool lnlflow",
           "work-pool": "prefect work-pool create lnlflow --type process --overwrite"}


def make_n(target: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(["make", "-n", target], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          check=True)
    return done.stdout.splitlines()


def test_prefect_targets_honour_an_exported_prefect_api_url():
    for target, command in TARGETS.items():
        assert f"PREFECT_API_URL=http://prefect.example:4300/api {command}" in make_n(
            target, PREFECT_API_URL="http://prefect.example:4300/api"), target


def test_prefect_targets_default_to_the_local_server():
    for target, command in TARGETS.items():
        assert f"PREFECT_API_URL=http://127.0.0.1:4200/api {command}" in make_n(target), target
    assert "PREFECT_API_URL=http://127.0.0.1:4311/api python -m flows.deploy" in make_n("deploy", PREFECT_PORT="4311")
    # the local server's UI keeps calling itself whatever the clients are pointed at
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4200/api prefect server start --host 127.0.0.1 --port 4200" in make_n(
        "prefect-server", PREFECT_API_URL="http://prefect.example:4300/api")


def test_make_serve_runs_lnlflow_serve():
    assert "lnlflow serve --host 127.0.0.1 --port 5001" in make_n("serve")
    assert "lnlflow serve --host 127.0.0.1 --port 5055" in make_n("serve", SERVE_PORT="5055")


def test_make_docs_builds_strictly_into_site_and_docs_serve_stays_on_loopback():
    assert "mkdocs build --strict --site-dir site" in make_n("docs")
    assert "mkdocs serve --strict --dev-addr 127.0.0.1:8000" in make_n("docs-serve")
    assert "mkdocs serve --strict --dev-addr 127.0.0.1:8011" in make_n("docs-serve", DOCS_PORT="8011")
