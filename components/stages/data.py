"""DVC stage `data`: materialise the dataset as versioned arrays + manifest, with a stratified split."""

from __future__ import annotations

import numpy as np

from components import paths
from components.config import load_params
from components.data import load_dataset, stratified_split
from components.integrity import remember
from components.io import atomic_dir, check_writable, sha256_file, write_json
from components.stages.common import run_stage
from components.data.record import input_record, source_record
from components.data.rows import split_codes, write_rows
from components.data.encoded import EncodedImages, write_encoded_store
from components.data.store import dataset_digest, store_summary, write_store


def main() -> None:
    cfg = load_params().data
    check_writable(folders=[paths.PREPARED])
    dataset = load_dataset(cfg)
    split = stratified_split(
        dataset.y, n_classes=dataset.n_classes, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        seed=cfg.seed, trusted=dataset.trusted, test=dataset.test, class_names=dataset.classes,
    )
    real = {"y_given": dataset.y_given, "noise_truth": dataset.noise_truth} if dataset.y_given is not None else {}
    with atomic_dir(paths.PREPARED) as out:
        if isinstance(dataset.X, EncodedImages):  # data.keep_encoded: the files stay, batches decode in training
            store = write_encoded_store(out / paths.STORE.name, dataset.X)
        else:
            store = write_store(out / paths.STORE.name, dataset.X)  # X in shards, written chunk by chunk
        np.savez(
            out / paths.DATASET_NPZ.name,
            y=dataset.y,
            train_idx=split["train"],
            val_idx=split["val"],
            test_idx=split["test"],
            **real,
        )
        manifest = {
            "name": dataset.name,
            "source": cfg.source,
            "classes": list(dataset.classes),
            "n_classes": dataset.n_classes,
            "n_samples": int(dataset.y.size),
            "input_shape": list(dataset.X.shape[1:]),
            "pixel_max": dataset.pixel_max,
            "input": input_record(dataset, cfg.source),
            "split": {name: int(idx.size) for name, idx in split.items()},
            "split_seed": cfg.seed,
            "rows": f"{paths.ROWS_CSV.name}: per stored row its split, source_row and file (under source_root)",
            "validation_split": "user-trusted rows" if dataset.trusted is not None else "stratified random",
            "test_split": "official test set" if dataset.test is not None else "stratified random",
            "class_counts": np.bincount(dataset.y, minlength=dataset.n_classes).tolist(),
            "sha256": dataset_digest(sha256_file(out / paths.DATASET_NPZ.name), store),
            "store": store_summary(store),
            **source_record(dataset),
        }
        source_row, files = dataset.origin()
        write_rows(out / paths.ROWS_CSV.name, split=split_codes(dataset.y.size, split), source_row=source_row,
                   file=files)
        write_json(out / paths.DATA_MANIFEST.name, manifest)
    remember({paths.STORE / s["file"]: s["sha256"] for s in store.get("shards", [])})  # hashed as written
    print(
        f"data: {manifest['name']} — {manifest['n_samples']} samples, {manifest['n_classes']} classes, "
        f"train/val/test {manifest['split']['train']}/{manifest['split']['val']}/{manifest['split']['test']}"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage("data", main))
