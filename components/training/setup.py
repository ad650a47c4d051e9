"""Turn the prepared arrays into device tensors, seed everything, build the augmenter."""

from __future__ import annotations

import numpy as np
import torch

from components.models.classifier import PIXEL_MAX
from components.training.augment import Augmenter
from components.data.store import ArrayStore
from components.errors import LnlError
from components.training.loop import TensorSplits
from components.training.streamed import StreamedRows


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (model initialisation); data order and augmentation use their own generators."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def in_device_memory(setting: str, nbytes: int, device: torch.device) -> bool:
    """runtime.data_on_device: `always`, `never`, or `auto` = when the data takes at most half of the free device
    memory (CUDA) or of the available RAM (CPU)."""
    if setting != "auto":
        return setting == "always"
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        import psutil

        free = psutil.virtual_memory().available
    return nbytes <= free // 2


def make_splits(arrays: dict, y_used: np.ndarray, n_classes: int, device: torch.device,
                verified: np.ndarray | None = None, *, on_device: str = "always", crop_seed: int = 0) -> TensorSplits:
    """Train on `y_used` (noisy) labels; validate on `y_used` too (clean unless noise.val_labels=noisy); test on clean.

    Training rows a person `verified` (data.corrections) stay in training and also join the trusted set: the
    validation rows that model selection and the meta methods' meta data use.

    uint8 images (N, C, H, W) stay uint8 on the device (4× less memory than float32); the models' input layer
    and the augmenter scale them to [0, 1] batch by batch. Other uint8 arrays become floats in [0, 1] here.

    `X` is the prepared store (or an array). `on_device` (runtime.data_on_device, see `in_device_memory`) decides
    whether each split is read into device memory once or streamed from the store batch by batch
    (components/training/streamed.py); both give the same values, batches and results. Photos kept encoded
    (data.keep_encoded) always stream: the training batches as random-resized crops seeded by `crop_seed`.
    """
    X, y = arrays["X"], arrays["y"]
    tr, va, te = arrays["train_idx"], arrays["val_idx"], arrays["test_idx"]
    if verified is not None:
        va = np.concatenate([va, tr[verified[tr]]])
    scale = PIXEL_MAX if X.dtype == np.uint8 and X.ndim != 4 else None
    encoded = getattr(X, "kind", None) == "encoded"
    if encoded and on_device == "always":
        raise LnlError("runtime.data_on_device: always cannot hold photos kept encoded (data.keep_encoded): each "
                       "batch is decoded as it trains; use auto or never")
    if encoded or (isinstance(X, ArrayStore) and not in_device_memory(on_device, X.nbytes, device)):
        def rows(idx: np.ndarray, train: bool = False):
            return StreamedRows(X, idx, device, scale=scale, crop_seed=crop_seed if encoded and train else None)
    else:
        def rows(idx: np.ndarray, train: bool = False):
            part = X[idx]
            return t(part.astype(np.float32) / scale if scale is not None else part)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return TensorSplits(rows(tr, True), t(y_used[tr]), rows(va), t(y_used[va]), rows(te), t(y[te]), n_classes)


def feature_std(x, *, chunk: int = 4096) -> torch.Tensor:
    """Per-feature sample std of (N, d) rows, summed in float64 over chunks (the same on both data paths)."""
    total = squares = None
    for part in x.split(chunk):
        values = part.to(torch.float64)
        total = values.sum(0) if total is None else total + values.sum(0)
        squares = values.square().sum(0) if squares is None else squares + values.square().sum(0)
    n = len(x)
    var = (squares - total.square() / n) / max(1, n - 1)
    return var.clamp_min(0).sqrt().float()


def make_augmenter(cfg, splits: TensorSplits, seed: int) -> Augmenter:
    """Feature data gets noise relative to each feature's spread; images get pixel-space noise."""
    scale = None
    if splits.x_train.ndim == 2:
        scale = feature_std(splits.x_train).clamp_min(1e-6)
    return Augmenter(cfg, feature_scale=scale, seed=seed, device=splits.x_train.device)
