"""The MLP and the small CNN."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from components.models.classifier import Classifier


class MLP(Classifier):
    """Two hidden layers with BatchNorm; works on any input shape (flattened)."""

    def __init__(self, in_features: int, n_classes: int, *, hidden: int = 256, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
        )
        super().__init__(body, nn.Linear(hidden, n_classes), dropout=dropout, normalize=normalize)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(Classifier):
    """Three conv-BN-ReLU blocks (width w, 2w, 4w), max-pooling while the map is ≥ 8 px, global average pool."""

    def __init__(self, in_channels: int, image_size: int, n_classes: int, *, width: int = 32, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        layers: list[nn.Module] = []
        size, c_in = image_size, in_channels
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            layers.append(_block(c_in, c_out))
            if i < 2 and size >= 8:
                layers.append(nn.MaxPool2d(2))
                size = math.ceil(size / 2)
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(nn.Sequential(*layers), nn.Linear(4 * width, n_classes), dropout=dropout, normalize=normalize)


class ProbabilityHead(nn.Module):
    """Serving wrapper: the classifier's softmax probabilities only (what the MLflow model returns)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        logits, _ = self.net(x)
        return torch.softmax(logits.float(), dim=1)
