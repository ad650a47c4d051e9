"""Shared fixtures: a throwaway DVC project with tiny parameters, and a pre-migrated MLflow database."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

# Tiny but real: the embedded digits data, a narrow CNN, a few epochs.
TINY = {
    "model": {"width": 4},
    "stage1": {"epochs": 3},
    "stage2": {"epochs": 2},
}


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` (e.g. "1m") mounted at `path` (a disk that fills up for real), unmounted afterwards;
    the test is skipped where mounting is not allowed."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root or CAP_SYS_ADMIN needed): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command with the test interpreter's bin first on PATH (so DVC stages use it). A command that hangs
    (a distributed rank waiting for a dead peer, say) fails the test after `timeout` seconds instead of the suite;
    torchrun's collectives give up after LNLFLOW_DIST_TIMEOUT (60 s here)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "LNLFLOW_DIST_TIMEOUT": os.environ.get("LNLFLOW_DIST_TIMEOUT", "60")}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def write_params(workspace: Path, *, compare: dict | None = None, **overrides: dict) -> None:
    """params.yaml = the shipped file + TINY + overrides (nested dicts merge); `compare` replaces that section."""
    params = _merge(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY), overrides)
    if compare is not None:
        params["compare"] = compare
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def copy_shipped_params(folder: Path) -> Path:
    """A copy of the shipped params.yaml (comments, quoting, compare.runs) in `folder`, mode 640."""
    path = folder / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    path.chmod(0o640)
    return path


def make_workspace(path: Path, *, git: bool) -> Path:
    """Copy the project's code and pipeline into `path`, write tiny params, and `dvc init` it."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("components", "flows", "compare"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__", "dvc.lock"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    write_params(path)
    if git:
        run(["git", "init", "-q"], path)
        run(["git", "config", "user.email", "test@example.com"], path)
        run(["git", "config", "user.name", "test"], path)
        run(["dvc", "init", "-q"], path)
        run(["git", "add", "-A"], path)
        run(["git", "commit", "-qm", "init"], path)
    else:
        run(["dvc", "init", "-q", "--no-scm"], path)
    return path


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An MLflow SQLite database migrated once per session (migrations take seconds)."""
    db = tmp_path_factory.mktemp("mlflow") / "template.db"
    run([sys.executable, "-c", f"import mlflow; mlflow.MlflowClient('sqlite:///{db}').search_experiments()"], ROOT)
    return db


@pytest.fixture()
def mlflow_db(mlflow_template, tmp_path, monkeypatch) -> str:
    """A fresh copy of the pre-migrated database for one test; MLFLOW_TRACKING_URI points at it."""
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield uri
    import mlflow

    mlflow.end_run()
