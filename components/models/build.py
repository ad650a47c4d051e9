"""Build a model from its architecture record, and save/load checkpoints safely (weights_only)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.errors import LnlError
from components.io import atomic_path


def architecture(cfg, input_shape: tuple[int, ...], n_classes: int) -> dict[str, Any]:
    """The plain-data record that fully determines a network (stored inside every checkpoint)."""
    if cfg.arch == "cnn" and len(input_shape) != 3:
        raise LnlError(f"model.arch: 'cnn' needs image data (C, H, W); this dataset has feature shape {tuple(input_shape)} — use 'mlp'")
    return {
        "arch": cfg.arch,
        "input_shape": [int(s) for s in input_shape],
        "n_classes": int(n_classes),
        "hidden": cfg.hidden,
        "width": cfg.width,
        "dropout": cfg.dropout,
    }


def build_model(arch: dict[str, Any]) -> nn.Module:
    """Instantiate the network described by an `architecture()` record."""
    from components.models.nets import MLP, SmallCNN

    if arch["arch"] == "ensemble":
        from components.models.ensemble import Ensemble

        return Ensemble([build_model(member) for member in arch["members"]])
    shape = arch["input_shape"]
    if arch["arch"] == "mlp":
        return MLP(math.prod(shape), arch["n_classes"], hidden=arch["hidden"], dropout=arch["dropout"])
    if arch["arch"] == "cnn":
        return SmallCNN(shape[0], shape[1], arch["n_classes"], width=arch["width"], dropout=arch["dropout"])
    raise LnlError(f"unknown architecture '{arch['arch']}'")


def save_model_checkpoint(path: str | Path, arch: dict[str, Any], state_dict: dict[str, torch.Tensor], **meta: Any) -> None:
    """Write {arch, state_dict, meta} atomically; plain types only, so it loads with weights_only=True."""
    payload = {"arch": arch, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by `save_model_checkpoint` into a fresh model on `device`."""
    path = Path(path)
    if not path.is_file():
        raise LnlError(f"{path}: model file not found (run the upstream stage first: dvc repro)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        model = build_model(payload["arch"])
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, EOFError, OSError, TypeError, pickle.UnpicklingError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LnlError(f"{path}: corrupt or incompatible model file ({reason})") from None
    return model.to(device), payload
