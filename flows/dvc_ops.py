"""The one place lnlflow calls DVC's Python API: reproduce a single stage in-process (no Prefect caching here), and
the `dvc status` that `lnlflow track` checks before it logs anything. Imports neither Prefect nor DVC up front."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from components.errors import LnlError, first_line


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


def pipeline_status(root: Path) -> dict[str, Any]:
    """`dvc status` of the root dvc.yaml ({stage: [changes]}, empty when up to date); a DVC error is one LnlError."""
    from dvc.exceptions import DvcException  # lazy: ~1 s
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            return repo.status(targets=[str(root / "dvc.yaml")])
    except DvcException as error:
        raise LnlError(f"dvc status failed: {first_line(error)}") from None
