"""Backbones from timm or torchvision (`model.arch: timm:<name>` / `torchvision:<name>`), an optional extra.

Neither library is a core dependency (torchvision cannot even be imported next to the CPU torch wheel), so
each is imported only here, only when such an architecture is asked for. The library's own checkpoint file
(`model.weights`) is loaded into the full library model with a strict check; then its classifier is
removed and our head put on the pooled features.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch import nn

from components.errors import LnlError, first_line
from components.models.classifier import Classifier
from components.models.weights import load_weights

LIBRARIES = {"timm": "timm", "torchvision": "torchvision.models"}


def is_external(arch: str) -> bool:
    """True for `timm:<name>` / `torchvision:<name>`."""
    return arch.partition(":")[0] in LIBRARIES and ":" in arch


def _library(arch: str) -> Any:
    library = arch.partition(":")[0]
    try:
        return importlib.import_module(LIBRARIES[library])
    except (ImportError, OSError, RuntimeError) as error:
        reason = first_line(error)
        raise LnlError(f"model.arch: '{arch}' needs the optional package '{library}', which cannot be imported here "
                       f"({reason}); install it (pip install timm / torchvision matching torch) or pick a built-in arch") from None


def _timm_backbone(timm: Any, name: str, weights: str | Path | None) -> tuple[nn.Module, int]:
    net = timm.create_model(name, pretrained=False)
    if weights is not None:
        load_weights(net, weights)
    net.reset_classifier(0)  # pooled features from now on
    return net, int(net.num_features)


def _torchvision_backbone(models: Any, name: str, weights: str | Path | None) -> tuple[nn.Module, int]:
    net = models.get_model(name, weights=None)
    if not isinstance(getattr(net, "fc", None), nn.Linear):
        raise LnlError(f"model.arch: 'torchvision:{name}' has no linear `.fc` classifier; only the ResNet family is "
                       "supported from torchvision (use timm:<name> for others)")
    if weights is not None:
        load_weights(net, weights)
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, int(features)


class ExternalClassifier(Classifier):
    """A library backbone as `.body` (one child, so `last_block` = the whole backbone) and a fresh linear head."""

    def __init__(self, arch: str, n_classes: int, *, weights: str | Path | None = None, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        library, _, name = arch.partition(":")
        build = _timm_backbone if library == "timm" else _torchvision_backbone
        backbone, features = build(_library(arch), name, weights)
        super().__init__(nn.Sequential(backbone), nn.Linear(features, n_classes), dropout=dropout, normalize=normalize)
