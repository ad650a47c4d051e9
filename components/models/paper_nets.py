"""The papers' CIFAR networks with fixed widths: MetaLabelNet's 8-layer CNN, Co-teaching's 9-layer CNN, WRN-28-10.

Each returns (logits, penultimate embedding) through `Classifier`, with a flat `.body` (one child per block,
so the meta step's `last_block` scope is meaningful). Sources:
- `cnn8_mln`: gorkemalgan/MetaLabelNet `model_getter.model_cifar10` (the SCE paper's CNN): three blocks of
  [conv3×3(bias)-BN-ReLU ×2, max-pool 2] at 64/128/196 channels, FC → 256 + BN1d + ReLU (the 256-d feature),
  FC → classes; Kaiming-normal fan-out convs. The FC input is 196·⌊H/8⌋·⌊W/8⌋ (3136 at 32×32).
- `cnn9_coteaching`: bhanML/Co-teaching `model.CNN`: conv3×3(bias)-BN-LeakyReLU(0.01) ×3 at 128, max-pool 2,
  dropout2d 0.25; ×3 at 256, max-pool, dropout2d; unpadded 512, 256, 128; global average pool (the 128-d
  feature); FC → classes; PyTorch's default init. The official dropout2d stays on in eval mode
  (`F.dropout2d` without `training=`); here it is an `nn.Dropout2d`, off in eval.
- `wrn28_10`: Zagoruyko & Komodakis' WRN-28-10 as in MW-Net / CLID-MU (xternalz/WideResNet-pytorch): conv 16,
  three groups of 4 pre-activation blocks at 160/320/640 (stride 1, 2, 2; a 1×1 projection without BN from the
  pre-activated input where the width changes), final BN-ReLU, global average pool (the 640-d feature), FC.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from components.models.classifier import Classifier

MIN_SIDE = {"cnn8_mln": 8, "cnn9_coteaching": 28, "wrn28_10": 4}  # smallest image side each network accepts


def _conv_bn(c_in: int, c_out: int, act: nn.Module, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=padding), nn.BatchNorm2d(c_out), act)


class MetaLabelNetCNN(Classifier):
    """MetaLabelNet's (and SCE's) 8-layer CIFAR-10 CNN: 6 convs, FC-256 feature, FC head."""

    def __init__(self, in_channels: int, image_hw: tuple[int, int], n_classes: int, *, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        blocks, c_in = [], in_channels
        for c_out in (64, 128, 196):
            blocks.append(nn.Sequential(_conv_bn(c_in, c_out, nn.ReLU()), _conv_bn(c_out, c_out, nn.ReLU()),
                                        nn.MaxPool2d(2)))
            c_in = c_out
        flat = 196 * (image_hw[0] // 8) * (image_hw[1] // 8)
        body = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(flat, 256), nn.BatchNorm1d(256), nn.ReLU())
        for module in body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
        super().__init__(body, nn.Linear(256, n_classes), dropout=dropout, normalize=normalize)


class CoteachingCNN(Classifier):
    """Co-teaching's 9-layer CNN (LeakyReLU 0.01, dropout2d 0.25 after the first two pools)."""

    def __init__(self, in_channels: int, n_classes: int, *, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        def act() -> nn.Module:
            return nn.LeakyReLU(0.01)

        body = nn.Sequential(
            nn.Sequential(_conv_bn(in_channels, 128, act()), _conv_bn(128, 128, act()), _conv_bn(128, 128, act()),
                          nn.MaxPool2d(2), nn.Dropout2d(0.25)),
            nn.Sequential(_conv_bn(128, 256, act()), _conv_bn(256, 256, act()), _conv_bn(256, 256, act()),
                          nn.MaxPool2d(2), nn.Dropout2d(0.25)),
            nn.Sequential(_conv_bn(256, 512, act(), 0), _conv_bn(512, 256, act(), 0), _conv_bn(256, 128, act(), 0)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        super().__init__(body, nn.Linear(128, n_classes), dropout=dropout, normalize=normalize)


class WideBlock(nn.Module):
    """BN-ReLU-conv(stride), BN-ReLU-conv; the shortcut is the raw input, or a 1×1 conv of the pre-activated
    input where the width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + shortcut


class WideResNet(Classifier):
    """WRN-depth-k for CIFAR: (depth − 4) / 6 blocks per group at 16k, 32k, 64k channels."""

    def __init__(self, in_channels: int, n_classes: int, *, depth: int = 28, k: int = 10, dropout: float = 0.0,
                 normalize: dict[str, Any] | None = None):
        per_group = (depth - 4) // 6
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
        c_in = 16
        for group, c_out in enumerate((16 * k, 32 * k, 64 * k)):
            for i in range(per_group):
                layers.append(WideBlock(c_in, c_out, 2 if group > 0 and i == 0 else 1))
                c_in = c_out
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        body = nn.Sequential(*layers)
        for module in body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        head = nn.Linear(c_in, n_classes)
        nn.init.zeros_(head.bias)
        super().__init__(body, head, dropout=dropout, normalize=normalize)


def paper_net(name: str, shape: list[int], n_classes: int, **common: Any) -> Classifier:
    """`cnn8_mln`, `cnn9_coteaching` or `wrn28_10` for images of `shape` (C, H, W)."""
    if name == "cnn8_mln":
        return MetaLabelNetCNN(shape[0], (shape[1], shape[2]), n_classes, **common)
    if name == "cnn9_coteaching":
        return CoteachingCNN(shape[0], n_classes, **common)
    return WideResNet(shape[0], n_classes, depth=28, k=10, **common)
