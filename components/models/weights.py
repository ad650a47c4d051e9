"""Initial weights from a local file (`model.weights`), with a strict name-and-shape check."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from components.errors import LnlError
from components.io import load_torch


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A name → tensor mapping from `path`: a plain state_dict or an lnlflow checkpoint ({arch, state_dict, meta})."""
    path = Path(path)
    if not path.is_file():
        raise LnlError(f"model.weights: {path}: file not found")
    payload = load_torch(path, f"model.weights: {path}: not a state_dict of tensors")
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, Tensor) for v in payload.values()):
        raise LnlError(f"model.weights: {path}: not a state_dict of tensors (a mapping of names to tensors)")
    return payload


def load_weights(model: nn.Module, path: str | Path, *, may_lack: tuple[str, ...] = ()) -> list[str]:
    """Copy every tensor of `path` into `model`; returns the model's keys the file lacks (left as initialised).

    Every key of the file must exist in the model with the same shape; the file may lack only keys starting
    with one of `may_lack` (e.g. "head." for a backbone trained on other classes).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise LnlError(f"model.weights: {path}: {len(unknown)} tensor(s) the model does not have, e.g. '{unknown[0]}' "
                       "(were they saved from this model.arch?)")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise LnlError(f"model.weights: {path}: '{key}' has shape {tuple(value.shape)} in the file but "
                           f"{tuple(own[key].shape)} in the model (check model.arch, model.width and the classes)")
    missing = [k for k in own if k not in state]
    required = [k for k in missing if not k.startswith(may_lack)]
    if required:
        raise LnlError(f"model.weights: {path}: lacks {len(required)} tensor(s) the model needs, e.g. '{required[0]}'")
    model.load_state_dict(state, strict=False)
    return missing
