"""The one place the flows call DVC: reproduce a single stage in-process (no Prefect caching here)."""

from __future__ import annotations

from pathlib import Path


def reproduce(root: Path, stage: str) -> bool:
    """Run `stage` if DVC says it changed (single item, upstream untouched); True if it ran or was restored."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return bool(repo.reproduce(stage, single_item=True))
