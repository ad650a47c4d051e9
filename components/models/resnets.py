"""CIFAR-variant ResNets: 3×3 stem convolution (stride 1, no max-pool), four stages doubling the width and
halving the map, global average pool. PreAct-ResNet-18 follows the DivideMix code base (conv-BN-ReLU stem,
pre-activation blocks whose shortcut starts from the pre-activated input, 1×1 projection without BN, no
final BN); ResNet-34 uses post-activation basic blocks [3, 4, 6, 3] with conv-BN projections.

`.body` is flat — stem, one child per residual block, pool, flatten — so the meta step's `last_block` scope
is the last residual block (plus the head).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from components.models.classifier import Classifier


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU-conv, BN-ReLU-conv, plus a shortcut taken from the first BN-ReLU's output."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        projection = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, plus the shortcut (identity or 1×1 conv-BN), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                                     nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """Stem conv-BN-ReLU at `width` channels, stages of `blocks` residual blocks at width·2^s, stride 2 from stage 2."""

    def __init__(self, block: type[nn.Module], blocks: tuple[int, ...], in_channels: int, n_classes: int, *,
                 width: int = 64, dropout: float = 0.0, normalize: dict[str, Any] | None = None):
        layers: list[nn.Module] = [nn.Sequential(_conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())]
        c_in = width
        for stage, count in enumerate(blocks):
            c_out = width * 2**stage
            for i in range(count):
                layers.append(block(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(nn.Sequential(*layers), nn.Linear(c_in, n_classes), dropout=dropout, normalize=normalize)


RESNETS: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
    "preact_resnet18": (PreActBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
}


def cifar_resnet(name: str, in_channels: int, n_classes: int, **kwargs: Any) -> CifarResNet:
    """`preact_resnet18` or `resnet34` (CIFAR variants)."""
    block, blocks = RESNETS[name]
    return CifarResNet(block, blocks, in_channels, n_classes, **kwargs)
