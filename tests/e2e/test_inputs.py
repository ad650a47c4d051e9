"""The `inputs` stage: an in-place edit of a file params.yaml names re-runs exactly the stages that read it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.config import validate_params
from components.errors import LnlError
from components.stages.inputs import DigestCache, digest_entry, fingerprint, stale_inputs
from tests.conftest import make_workspace, run, write_params

TRAINING = ["stage1", "stage2", "evaluate"]


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w/.@:-]+)'", output)


def write_npz(path: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, X=rng.random((rows, 6)).astype(np.float32), y=np.arange(rows) % 3)


def set_params(ws: Path, **sections: dict) -> None:
    """Tiny npz + MLP params without the optional compare section (a plain `dvc repro` must not need it)."""
    base = {"data": {"source": "npz", "path": "data/raw/mine.npz"}, "model": {"arch": "mlp", "hidden": 8},
            "stage1": {"epochs": 2}, "stage2": {"epochs": 1, "method": "ce"}}
    write_params(ws, **{k: {**base.get(k, {}), **sections.get(k, {})} for k in {*base, *sections}})
    params = yaml.safe_load((ws / "params.yaml").read_text())
    del params["compare"]
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def write_weights(path: Path, seed: int) -> None:
    """A state_dict of the tiny MLP below (6 features, 3 classes, hidden 8)."""
    import torch

    from components.models.nets import MLP

    torch.manual_seed(seed)
    torch.save(MLP(6, 3, hidden=8).state_dict(), path)


@pytest.mark.slow
def test_edits_in_place_rerun_exactly_their_readers(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    (ws / "data/raw").mkdir(parents=True)
    write_npz(ws / "data/raw/mine.npz", 120, seed=0)
    write_weights(ws / "data/raw/init.pt", seed=0)
    set_params(ws, model={"weights": "data/raw/init.pt"})
    assert ran(run(["dvc", "repro"], ws).stdout) == ["inputs", "data", "noise", *TRAINING]
    assert json.loads((ws / "data/prepared/manifest.json").read_text())["n_samples"] == 120

    start = time.perf_counter()
    noop = run(["dvc", "repro"], ws)
    print(f"no-op dvc repro: {time.perf_counter() - start:.2f} s")
    assert ran(noop.stdout) == ["inputs"], noop.stdout
    assert stale_inputs(ws) == []

    write_npz(ws / "data/raw/mine.npz", 90, seed=1)  # same name, other rows
    assert stale_inputs(ws) == ["data.path data/raw/mine.npz changed since the last dvc repro (stage data is stale)"]
    assert "always changed" in run(["dvc", "status", "inputs"], ws).stdout
    run(["dvc", "repro", "inputs"], ws)
    assert "data/inputs/data.json" in run(["dvc", "status", "data"], ws).stdout
    assert ran(run(["dvc", "repro"], ws).stdout) == ["inputs", "data", "noise", *TRAINING]
    assert json.loads((ws / "data/prepared/manifest.json").read_text())["n_samples"] == 90
    assert stale_inputs(ws) == []

    write_weights(ws / "data/raw/init.pt", seed=1)  # other weights, same file
    assert stale_inputs(ws) == ["model.weights data/raw/init.pt changed since the last dvc repro (stage stage1 is stale)"]
    assert ran(run(["dvc", "repro"], ws).stdout) == ["inputs", *TRAINING]

    os.remove(ws / "data/raw/init.pt")
    failed = run(["dvc", "repro"], ws, check=False)
    assert failed.returncode != 0 and ran(failed.stdout) == ["inputs"]
    assert "lnlflow inputs: error: model.weights: data/raw/init.pt: no such file or folder" in failed.stderr
    assert stale_inputs(ws) == ["model.weights: data/raw/init.pt: no such file or folder"]

    set_params(ws)
    (ws / "params.yaml").write_text((ws / "params.yaml").read_text() + "trainig:\n  epochs: 3\n")
    failed = run(["dvc", "repro"], ws, check=False)
    assert "lnlflow inputs: error: params.yaml: trainig: unknown key" in failed.stderr
    assert ran(failed.stdout) == ["inputs"]


def rewrite(path: Path, data: bytes, tick: int) -> None:
    """Overwrite `path` and move its mtime on by `tick` ms (two writes may share a coarse kernel timestamp)."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before, before + tick * 1_000_000))


def test_folder_digest_is_stable_and_cached(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat/a.png").write_bytes(b"aaa")
    (folder / "dog.png").write_bytes(b"bb")
    db = tmp_path / "cache.sqlite"
    cache = DigestCache(db)
    first = digest_entry(folder, cache)
    assert first["files"] == 2 and first["size"] == 5
    cache.close()
    # a wrong cached digest for an unchanged file is trusted (size, mtime_ns, inode match): proof the file is not reread
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE digests SET sha256 = 'x' WHERE path LIKE '%dog.png'")
    cache = DigestCache(db)
    trusted = digest_entry(folder, cache)["sha256"]
    assert trusted != first["sha256"]
    rewrite(folder / "dog.png", b"cc", 1)  # same size, another mtime: rehashed
    assert digest_entry(folder, cache)["sha256"] not in (first["sha256"], trusted)
    rewrite(folder / "dog.png", b"bb", 2)
    assert digest_entry(folder, cache) == first
    cache.close()


def test_fingerprint_bytes_and_missing_path(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"123")
    params = validate_params({"data": {"source": "npz", "path": "x.npz"}})
    cache = DigestCache(tmp_path / "cache.sqlite")
    fields = ("data.path", "data.root")
    text = fingerprint(params, fields, tmp_path, cache)
    assert text == fingerprint(params, fields, tmp_path, cache)
    assert json.loads(text) == {"data.path": {"path": "x.npz", "size": 3, "sha256": hashlib.sha256(b"123").hexdigest()}}
    with pytest.raises(LnlError, match=r"^data\.path: nope\.npz: no such file or folder$"):
        fingerprint(validate_params({"data": {"source": "npz", "path": "nope.npz"}}), fields, tmp_path, cache)
    cache.close()
