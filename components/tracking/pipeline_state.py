"""The pipeline state a run stands for: its identity (dvc.lock's digest and output hashes), the parameters that made
its outputs, and the check that those outputs are current (`dvc status` and the input fingerprints)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import yaml

from components.config import METHOD_NAMES, METHOD_SECTIONS, Params, read_yaml, validate_params
from components.errors import LnlError, first_line

PIPELINE_STAGES = ("data", "noise", "stage1", "stage2", "evaluate")
LOGGED_SECTIONS = ("data", "noise", "model", "augment", "runtime", "stage1", "stage2", "evaluate")  # what made outputs


def _lock_stages(root: Path, *, as_dvc: bool = False) -> dict[str, Any]:
    """dvc.lock's stage entries. `as_dvc`: parsed as DVC writes it (YAML 1.2, so `1e-05` is a float); otherwise
    with PyYAML, which the run identity digest has always used (the same text must keep the same digest)."""
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        raise LnlError("dvc.lock not found: run `dvc repro` before tracking")
    try:
        lock = read_yaml(lock_path) if as_dvc else yaml.safe_load(lock_path.read_text())
        stages = (lock or {}).get("stages", {})
    except (yaml.YAMLError, AttributeError) as error:
        raise LnlError(f"{lock_path}: corrupt file ({first_line(error)})") from None
    missing = [s for s in PIPELINE_STAGES if s not in stages]
    if missing:
        raise LnlError(f"dvc.lock has no entry for stage(s) {', '.join(missing)}: run `dvc repro` first")
    return stages


def lock_state(root: Path) -> tuple[str, dict[str, str]]:
    """(sha256 of dvc.lock's stage entries, {stage: md5 of its first output}) — the run's identity."""
    stages = _lock_stages(root)
    digest = hashlib.sha256(yaml.safe_dump(stages, sort_keys=True).encode()).hexdigest()
    outs = {name: entry["outs"][0]["md5"] for name, entry in stages.items() if entry.get("outs")}
    return digest, outs


def locked_params(root: Path) -> Params:
    """The parameters the outputs were made with: the `params.yaml` values dvc.lock recorded for each stage."""
    merged: dict[str, Any] = {}
    for entry in _lock_stages(root, as_dvc=True).values():
        for key, value in (entry.get("params") or {}).get("params.yaml", {}).items():
            *parents, leaf = key.split(".")  # a whole section (`stage2`) or one field (`noise.rate`)
            node = merged
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = {**node.get(leaf, {}), **value} if isinstance(value, dict) else value
    return validate_params(merged, source="dvc.lock (params recorded by the last dvc repro)")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def logged_params(params: Params) -> dict[str, str]:
    """The run's params: the sections that made the outputs, with only the stage2 sections the active method
    reads (its own, plus stage2.meta for the meta-learners) and the label-free selection; None skipped, floats as repr."""
    method = params.stage2.method
    inactive = {name for kind in METHOD_NAMES for name in METHOD_SECTIONS[kind]} - set(METHOD_SECTIONS[method])
    data = params.model_dump(mode="json", include=set(LOGGED_SECTIONS))
    data["stage2"] = {key: value for key, value in data["stage2"].items() if key not in inactive}
    return {key: repr(value) if isinstance(value, float) else str(value)
            for key, value in flatten(data).items() if value is not None}


def _status_detail(entries: list[Any]) -> str:
    """`dvc status` entries of one stage in words, e.g. `params.yaml: stage2 modified, reports deleted`."""
    parts = []
    for entry in entries:
        if isinstance(entry, str):
            parts.append(entry)
            continue
        for files in entry.values():  # {"changed deps" | "changed outs": {path: state | {param: state}}}
            for path, state in files.items():
                if isinstance(state, dict):
                    parts.extend(f"{path}: {key} {change}" for key, change in state.items())
                else:
                    parts.append(f"{path} {state}")
    return ", ".join(parts)


def check_fresh(root: Path) -> None:
    """Refuse outputs that the current params.yaml, code and input files would not reproduce: `dvc status` of the
    root dvc.yaml must be clean (the always-changed `inputs` stage aside) and no input file may have changed."""
    from flows.dvc_ops import pipeline_status  # DVC is called from flows/ only (README: Design)

    status = pipeline_status(root)
    changed = {key.rsplit(":", 1)[-1]: _status_detail([e for e in entries if e != "always changed"])
               for key, entries in status.items()}
    changed = {stage: detail for stage, detail in changed.items() if detail}
    if changed:
        detail = "; ".join(f"{stage}: {what}" for stage, what in changed.items())
        raise LnlError(f"the outputs are out of date ({detail}): run `dvc repro` first, then track")
    if importlib.util.find_spec("components.stages.inputs") is not None:
        from components.stages.inputs import stale_inputs

        stale = stale_inputs(root)
        if stale:
            raise LnlError(f"the outputs are out of date ({'; '.join(stale)}): run `dvc repro` first, then track")
