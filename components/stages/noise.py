"""DVC stage `noise`: inject label noise into the training split (and the validation split if asked)."""

from __future__ import annotations

import numpy as np

from components import paths
from components.config import load_params
from components.io import atomic_dir, read_json, sha256_file, write_json
from components.noise import inject_noise
from components.stages.common import load_prepared, run_stage


def _noisify(cfg, y: np.ndarray, X: np.ndarray, n_classes: int, pixel_max: float | None, seed: int):
    features = None
    if cfg.kind == "instance":
        features = X.reshape(len(X), -1).astype(np.float64)
        if cfg.idn_pixel_scale == "raw" and pixel_max is not None:
            features = features * pixel_max
    class_map = dict(cfg.class_map) if isinstance(cfg.class_map, dict) else cfg.class_map
    return inject_noise(
        y, n_classes=n_classes, kind=cfg.kind, rate=cfg.rate, seed=seed, features=features,
        class_map=class_map, sampling=cfg.sampling, idn_norm_std=cfg.idn_norm_std,
    )


def main() -> None:
    cfg = load_params().noise
    data = load_prepared()
    info = read_json(paths.DATA_MANIFEST)
    X, y, train = data["X"], data["y"], data["train_idx"]
    n_classes = info["n_classes"]
    y_noisy = y.copy()
    y_noisy[train], manifest = _noisify(cfg, y[train], X[train], n_classes, info["pixel_max"], cfg.seed)
    manifest.update(
        dataset=info["name"], split="after_split (train only)", source_hash=info["sha256"], val_labels=cfg.val_labels
    )
    if cfg.val_labels == "noisy":
        val = data["val_idx"]
        y_noisy[val], val_manifest = _noisify(cfg, y[val], X[val], n_classes, info["pixel_max"], cfg.seed + 1)
        manifest["val_realised_rate"] = val_manifest["realised_rate"]
    with atomic_dir(paths.NOISY) as out:
        np.savez(out / paths.NOISY_NPZ.name, y_noisy=y_noisy, noisy_mask=y_noisy != y)
        manifest["labels_sha256"] = sha256_file(out / paths.NOISY_NPZ.name)
        write_json(out / paths.NOISE_MANIFEST.name, manifest)
    print(
        f"noise: {cfg.kind} requested {cfg.rate:.2f}, realised {manifest['realised_rate']:.4f} "
        f"on {len(train)} training labels (validation labels: {cfg.val_labels})"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage("noise", main))
