"""Build a model from its architecture record, and save/load checkpoints safely (weights_only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.errors import LnlError, first_line
from components.integrity import check_model, write_sidecar
from components.io import load_torch, save_torch


DEFAULT_WIDTH = {"preact_resnet18": 64, "resnet34": 64}  # the standard widths; others (cnn, mlp): 32


def architecture(cfg, input_shape: tuple[int, ...], n_classes: int, *, x_train: torch.Tensor | None = None) -> dict[str, Any]:
    """The plain-data record that fully determines a network (stored inside every checkpoint).

    `x_train` (the training split, uint8 or float) is read only for `model.normalize: train`.
    """
    from components.models.normalization import normalization_record
    from components.models.paper_nets import MIN_SIDE

    if cfg.arch != "mlp" and len(input_shape) != 3:
        raise LnlError(f"model.arch: '{cfg.arch}' needs image data (C, H, W); this dataset has feature shape {tuple(input_shape)} — use 'mlp'")
    if cfg.arch in MIN_SIDE and min(input_shape[1:]) < MIN_SIDE[cfg.arch]:
        side = MIN_SIDE[cfg.arch]
        raise LnlError(f"model.arch: '{cfg.arch}' needs images of at least {side}×{side} pixels; this dataset's are "
                       f"{input_shape[1]}×{input_shape[2]} (use cnn, or a source with larger images)")
    record = {
        "arch": cfg.arch,
        "input_shape": [int(s) for s in input_shape],
        "n_classes": int(n_classes),
        "hidden": cfg.hidden,
        "width": cfg.width if cfg.width is not None else DEFAULT_WIDTH.get(cfg.arch, 32),  # unused by paper nets
        "dropout": cfg.dropout,
    }
    normalize = normalization_record(cfg.normalize, tuple(input_shape), x_train)
    if normalize is not None:
        record["normalize"] = normalize
    return record


def build_model(arch: dict[str, Any], *, weights: str | Path | None = None) -> nn.Module:
    """Instantiate the network described by an `architecture()` record.

    `weights` (`model.weights`): a local state_dict to start from; for built-in archs it may lack the head
    (which then keeps its fresh initialisation), for timm/torchvision ones it is the library's checkpoint.
    """
    from components.models.external import ExternalClassifier, is_external
    from components.models.nets import MLP, SmallCNN
    from components.models.paper_nets import MIN_SIDE, paper_net
    from components.models.resnets import RESNETS, cifar_resnet
    from components.models.weights import load_weights

    if arch["arch"] == "ensemble":
        from components.models.ensemble import Ensemble

        return Ensemble([build_model(member) for member in arch["members"]])
    shape, name, n_classes = arch["input_shape"], arch["arch"], arch["n_classes"]
    common = {"dropout": arch["dropout"], "normalize": arch.get("normalize")}
    if is_external(name):
        return ExternalClassifier(name, n_classes, weights=weights, **common)
    if name == "mlp":
        model: nn.Module = MLP(math.prod(shape), n_classes, hidden=arch["hidden"], **common)
    elif name == "cnn":
        model = SmallCNN(shape[0], shape[1], n_classes, width=arch["width"], **common)
    elif name in RESNETS:
        model = cifar_resnet(name, shape[0], n_classes, width=arch["width"], **common)
    elif name in MIN_SIDE:
        model = paper_net(name, shape, n_classes, **common)
    else:
        raise LnlError(f"unknown architecture '{name}'")
    if weights is not None:
        fresh = load_weights(model, weights, may_lack=("head.",))
        if fresh:
            print(f"model.weights: {weights}: the head was not in the file and starts freshly initialised")
    return model


def save_model_checkpoint(path: str | Path, arch: dict[str, Any], state_dict: dict[str, torch.Tensor], **meta: Any) -> None:
    """Write {arch, state_dict, meta} atomically; plain types only, so it loads with weights_only=True."""
    payload = {"arch": arch, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}
    save_torch(payload, path)
    write_sidecar(Path(path))  # its sha256, checked before the pipeline loads it (components/integrity.py)


def load_model_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                          checked: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by `save_model_checkpoint` into a fresh model on `device`; `checked`: a pipeline
    output, whose bytes must first match the sha256 recorded beside it."""
    path = Path(path)
    if not path.is_file():
        raise LnlError(f"{path}: model file not found (run the upstream stage first: dvc repro)")
    if checked:
        check_model(path)
    payload = load_torch(path, f"{path}: not a valid lnlflow model file", map_location=device)
    try:
        model = build_model(payload["arch"])
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, IndexError, AttributeError) as error:
        reason = f"{type(error).__name__}: {first_line(error)}"
        raise LnlError(f"{path}: not a valid lnlflow model file ({reason})") from None
    return model.to(device), payload
