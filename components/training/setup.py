"""Turn the prepared arrays into device tensors, seed everything, build the augmenter."""

from __future__ import annotations

import numpy as np
import torch

from components.models.classifier import PIXEL_MAX
from components.training.augment import Augmenter
from components.training.loop import TensorSplits


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (model initialisation); data order and augmentation use their own generators."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def make_splits(arrays: dict[str, np.ndarray], y_used: np.ndarray, n_classes: int, device: torch.device,
                verified: np.ndarray | None = None) -> TensorSplits:
    """Train on `y_used` (noisy) labels; validate on `y_used` too (clean unless noise.val_labels=noisy); test on clean.

    Training rows a person `verified` (data.corrections) stay in training and also join the trusted set: the
    validation rows that model selection and the meta methods' meta data use.

    uint8 images (N, C, H, W) stay uint8 on the device (4× less memory than float32); the models' input layer
    and the augmenter scale them to [0, 1] batch by batch. Other uint8 arrays become floats in [0, 1] here.
    """
    X, y = arrays["X"], arrays["y"]
    tr, va, te = arrays["train_idx"], arrays["val_idx"], arrays["test_idx"]
    if verified is not None:
        va = np.concatenate([va, tr[verified[tr]]])
    if X.dtype == np.uint8 and X.ndim != 4:
        X = X.astype(np.float32) / PIXEL_MAX

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return TensorSplits(t(X[tr]), t(y_used[tr]), t(X[va]), t(y_used[va]), t(X[te]), t(y[te]), n_classes)


def make_augmenter(cfg, splits: TensorSplits, seed: int) -> Augmenter:
    """Feature data gets noise relative to each feature's spread; images get pixel-space noise."""
    scale = None
    if splits.x_train.ndim == 2:
        scale = splits.x_train.std(0).clamp_min(1e-6)
    return Augmenter(cfg, feature_scale=scale, seed=seed, device=splits.x_train.device)
