"""DVC stage `noise`: inject label noise into the training split (and the validation split if asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components import paths
from components.config import REAL_NOISE, load_params
from components.errors import LnlError
from components.io import atomic_dir, check_writable, read_json, sha256_file, write_json
from components.noise import inject_noise
from components.noise_limits import noise_limit_problem
from components.noise.real import cifar_n_labels, real_manifest
from components.stages.common import open_checked_store, read_npz, run_stage
from components.data.rows import read_rows
from components.review.corrections import read_corrections
from components.training.streams import stream_seed


def _noisify(cfg, y: np.ndarray, X: np.ndarray | None, n_classes: int, pixel_max: float | None, seed: int):
    features = None
    if cfg.kind == "instance":
        features = X.reshape(len(X), -1).astype(np.float64)
        if X.dtype == np.uint8:  # raw pixels already; unit scale divides by the pixel maximum
            features = features / pixel_max if cfg.idn_pixel_scale == "unit" else features
        elif cfg.idn_pixel_scale == "raw" and pixel_max is not None:
            features = features * pixel_max
    class_map = dict(cfg.class_map) if isinstance(cfg.class_map, dict) else cfg.class_map
    return inject_noise(
        y, n_classes=n_classes, kind=cfg.kind, rate=cfg.rate, seed=seed, features=features,
        class_map=class_map, sampling=cfg.sampling, idn_norm_std=cfg.idn_norm_std,
    )


def _real(cfg, data: dict[str, np.ndarray], n_classes: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels from noise.label_file (CIFAR-N) or the source's own; returns y_noisy, noise truth (-1/0/1), manifest."""
    y, train, val = data["y"], data["train_idx"], data["val_idx"]
    rows = np.concatenate([train, val]) if cfg.val_labels == "noisy" else train
    given, truth = y.copy(), np.zeros(y.size, dtype=np.int8)
    extra: dict = {"convention": "real/source labels"}
    if cfg.label_file:
        official = np.sort(np.concatenate([train, val]))  # the official training images, in file order
        given[official], key = cifar_n_labels(cfg.label_file, cfg.label_set, y[official])
        truth = (given != y).astype(np.int8)
        extra = {"convention": f"real/{cfg.label_set}", "label_file": Path(cfg.label_file).name, "label_key": key,
                 "label_file_sha256": sha256_file(cfg.label_file)}
    else:
        if "y_given" not in data:
            raise LnlError(
                "noise.kind 'real' needs noise.label_file (CIFAR-N) or a data source with its own noisy labels "
                "(image_folder with a clean column, clothing1m, mini_webvision, animal10n, food101n)"
            )
        given, truth = data["y_given"], data["noise_truth"]
    y_noisy = y.copy()
    y_noisy[rows] = given[rows]
    manifest = {"kind": REAL_NOISE, **extra, **real_manifest(y[train], y_noisy[train], truth[train], n_classes)}
    if cfg.val_labels == "noisy":
        manifest["val_realised_rate"] = real_manifest(y[val], y_noisy[val], truth[val], n_classes)["realised_rate"]
    labelled = np.zeros(y.size, dtype=np.int8)
    labelled[rows] = truth[rows]
    return y_noisy, labelled, manifest


def _corrections(path: str | None, info: dict):
    """The reviewer's corrections (checked against the stored rows and classes), or None."""
    if path is None:
        return None
    return read_corrections(path, classes=info["classes"], table=read_rows(paths.ROWS_CSV))


def main() -> None:
    params = load_params()
    cfg = params.noise
    check_writable(folders=[paths.NOISY])
    data = read_npz(paths.DATASET_NPZ, ("y", "train_idx", "val_idx"), optional=("y_given", "noise_truth"))  # not X
    info = read_json(paths.DATA_MANIFEST)
    n_classes = info["n_classes"]
    if problem := noise_limit_problem(cfg.kind, cfg.rate, n_classes):  # params.yaml cannot know C for every source
        raise LnlError(problem)
    corrections = _corrections(params.data.corrections, info)  # checked before any noise is drawn
    y, train, val = data["y"], data["train_idx"], data["val_idx"]
    if cfg.kind == REAL_NOISE:
        y_noisy, truth, manifest = _real(cfg, data, n_classes)
        noisy_mask, known = truth == 1, truth >= 0
    else:
        store = open_checked_store() if cfg.kind == "instance" else None  # only instance noise reads pixels

        def pixels(rows: np.ndarray) -> np.ndarray | None:
            return store.take(rows) if store is not None else None

        y_noisy = y.copy()
        y_noisy[train], manifest = _noisify(cfg, y[train], pixels(train), n_classes, info["pixel_max"],
                                            stream_seed(cfg.seed, "noise.train"))
        if cfg.val_labels == "noisy":
            y_noisy[val], val_manifest = _noisify(cfg, y[val], pixels(val), n_classes, info["pixel_max"],
                                                  stream_seed(cfg.seed, "noise.val"))
            manifest["val_realised_rate"] = val_manifest["realised_rate"]
        noisy_mask, known = y_noisy != y, np.ones(y.size, bool)
    manifest.update(seed=cfg.seed, dataset=info["name"], split="after_split (train only)",
                    source_hash=info["sha256"], val_labels=cfg.val_labels)
    verified = np.zeros(y.size, dtype=bool)
    changed = np.zeros(y.size, dtype=bool)
    if corrections is not None:  # a person's label wins over the source's and the noise stage's
        y_noisy, verified, changed = corrections.apply(y_noisy)
        noisy_mask = np.where(known, y_noisy != y, noisy_mask)
        manifest["corrections"] = {
            "file": Path(params.data.corrections).name, "sha256": sha256_file(params.data.corrections),
            **corrections.summary(changed),
            "realised_rate_after": float(noisy_mask[train][known[train]].mean()) if known[train].any() else None,
        }
    with atomic_dir(paths.NOISY) as out:
        np.savez(out / paths.NOISY_NPZ.name, y_noisy=y_noisy, noisy_mask=noisy_mask, noise_known=known,
                 verified=verified, corrected=changed)
        manifest["labels_sha256"] = sha256_file(out / paths.NOISY_NPZ.name)
        write_json(out / paths.NOISE_MANIFEST.name, manifest)
    if cfg.kind == REAL_NOISE:
        rate = manifest["realised_rate"]
        print(f"noise: real ({manifest['convention']}), measured rate "
              f"{'unknown' if rate is None else f'{rate:.4f}'} on {len(train)} training labels "
              f"({manifest['n_ground_truth']} with ground truth; validation labels: {cfg.val_labels})")
    else:
        print(f"noise: {cfg.kind} requested {cfg.rate:.2f}, realised {manifest['realised_rate']:.4f} "
              f"on {len(train)} training labels (validation labels: {cfg.val_labels})")
    if corrections is not None:
        c = manifest["corrections"]
        print(f"noise: {c['file']}: {c['labels_changed']} labels changed, {c['verified']} verified by a person "
              f"({c['rows']} rows)")

if __name__ == "__main__":
    raise SystemExit(run_stage("noise", main))
