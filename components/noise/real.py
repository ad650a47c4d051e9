"""Real label noise: CIFAR-N human labels (a .pt file) or the noisy labels a data source carries itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.errors import LnlError
from components.io import torch_load_reason
from components.noise.generators import transition_matrix

# label_set name → key in CIFAR-10_human.pt / CIFAR-100_human.pt
CIFAR_N_SETS = {
    "aggre": "aggre_label", "random1": "random_label1", "random2": "random_label2", "random3": "random_label3",
    "worst": "worse_label", "noisy": "noisy_label",
}


def load_human_labels(path: str | Path) -> dict[str, np.ndarray]:
    """The CIFAR-N file's arrays, loaded with torch's weights-only unpickler and only numpy arrays allowed."""
    import numpy._core.multiarray as multiarray
    import torch

    path = Path(path)
    if not path.is_file():
        raise LnlError(f"noise.label_file: file not found: {path}")
    allowed = [
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"), multiarray._reconstruct,
        np.ndarray, np.dtype, type(np.dtype("int64")),
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or zipfile errors for a bad file
        raise LnlError(f"noise.label_file: {path.name} is not a CIFAR-N label file ({torch_load_reason(error)})") from None
    if not isinstance(content, dict) or "clean_label" not in content:
        raise LnlError(f"noise.label_file: {path.name} is not a CIFAR-N label file (no clean_label array)")
    return {str(k): np.asarray(v) for k, v in content.items()}


def cifar_n_labels(path: str | Path, label_set: str, y_train: np.ndarray) -> tuple[np.ndarray, str]:
    """Human labels of `label_set` for the CIFAR training images `y_train` (official order); checks they match.

    Returns the labels and the file key they came from.
    """
    content = load_human_labels(path)
    valid = [name for name, key in CIFAR_N_SETS.items() if key in content]
    key = CIFAR_N_SETS.get(label_set)
    if key not in content:
        raise LnlError(f"noise.label_set: '{label_set}' is not in {Path(path).name}; valid names: {', '.join(valid)}")
    clean, noisy = content["clean_label"].astype(np.int64), content[key].astype(np.int64)
    if clean.shape != y_train.shape:
        raise LnlError(
            f"noise.label_file: {Path(path).name} has {clean.size} labels but the dataset has {y_train.size} official "
            "training images (real CIFAR-N noise needs data.source cifar10 / cifar100, with their official split)"
        )
    mismatch = np.flatnonzero(clean != y_train)
    if mismatch.size:
        raise LnlError(
            f"noise.label_file: its clean labels differ from the dataset's training labels at {mismatch.size} images "
            f"(first: image {int(mismatch[0])}); it belongs to another dataset (CIFAR-10N ↔ cifar10, CIFAR-100N ↔ cifar100)"
        )
    return noisy, key


def real_manifest(y_true: np.ndarray, y_noisy: np.ndarray, truth: np.ndarray, n_classes: int) -> dict:
    """Measured rates where the truth is known (`truth`: 1 wrong, 0 right, -1 unknown, per training row)."""
    known = truth >= 0
    class_known = (truth == 0) | (y_noisy != y_true)  # rows whose true class is known too
    totals = np.bincount(y_true[known], minlength=n_classes)
    flips = np.bincount(y_true[truth == 1], minlength=n_classes)
    return {
        "requested_rate": None,
        "realised_rate": float((truth[known] == 1).mean()) if known.any() else None,
        "expected_rate": None,
        "ground_truth": "full" if known.all() else ("partial" if known.any() else "none"),
        "n_ground_truth": int(known.sum()),
        "per_class_realised": [float(f / t) if t else 0.0 for f, t in zip(flips, totals)],
        "transition_matrix": transition_matrix(y_true[class_known], y_noisy[class_known], n_classes).tolist(),
        "n_samples": int(y_true.size),
        "n_classes": int(n_classes),
    }
