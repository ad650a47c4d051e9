"""The one place the flows call DVC: reproduce a single stage in-process (no Prefect caching here)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def _stage_interpreter_first() -> None:
    """Stage commands say `python`: make that the interpreter running the flow, even without an active venv."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != here:
        os.environ["PATH"] = f"{here}{os.pathsep}{path}"


def reproduce(root: Path, stage: str) -> bool:
    """Run `stage` if DVC says it changed (single item, upstream untouched); True if it ran or was restored."""
    from dvc.repo import Repo

    _stage_interpreter_first()
    # DVC resolves outputs against the working directory, so work from the project root.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        return bool(repo.reproduce(stage, single_item=True))
