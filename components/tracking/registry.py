"""The model registry: one version per model hash, the `candidate` alias on the newest, `champion` on the best by
the selection metric; a run that did not finish has its versions deleted and the aliases put back."""

from __future__ import annotations

import contextlib
from typing import Any

CANDIDATE, CHAMPION = "candidate", "champion"
SELECTION_METRIC = "val_acc_clean_selected"  # accuracy on the trusted validation split with clean labels


def _register(client, mlflow, model_uri: str, name: str, model_md5: str, tags: dict[str, str]) -> dict[str, Any]:
    """Create a version unless this model hash is registered; alias `candidate`; promote to `champion` if better."""
    from mlflow.exceptions import MlflowException

    existing = client.search_model_versions(f"name='{name}' and tags.dvc_md5='{model_md5}'")
    if existing:
        return {"version": str(existing[0].version), "new_version": False, "promoted": False,
                "champion": _champion(client, name)}
    version = str(mlflow.register_model(model_uri, name, tags={"dvc_md5": model_md5, **tags}).version)
    client.set_registered_model_alias(name, CANDIDATE, version)
    score = float(tags.get(SELECTION_METRIC, "-inf"))  # absent without a validation split: never beats a scored one
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        best = float(current.tags.get(SELECTION_METRIC, "-inf"))
    except MlflowException:
        current, best = None, float("-inf")
    promoted = current is None or score > best
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return {"version": version, "new_version": True, "promoted": promoted,
            "champion": version if promoted else str(current.version)}


def _champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _aliases(client, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException:
        return {}


def _unregister(client, name: str, run_id: str, aliases: dict[str, str] | None = None) -> None:
    """Delete the versions a run registered (it did not finish) and put `aliases` back where they were."""
    for version in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        client.delete_model_version(name, version.version)
    for alias, version in (aliases or {}).items():
        with contextlib.suppress(Exception):  # that version may be gone too
            client.set_registered_model_alias(name, alias, version)
