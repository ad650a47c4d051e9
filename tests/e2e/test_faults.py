"""The faults and bad inputs of issue 21 through the real commands: one exact stderr line (or a repair that needs
none), no traceback, nothing half-written, and a clean run afterwards that works.

Commands run as `python -m components.cli …` in the workspace (its copy of `components` first on sys.path, as
DVC's stages run), so they exercise this checkout's code whichever copy the `lnlflow` script was installed from.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.data.rows import SPLITS, read_rows
from tests.conftest import make_workspace, run, small_disk, write_params
from tests.e2e.test_edges import leftovers, one_error_line
from tests.e2e.test_review import label_studio_export

pytestmark = pytest.mark.slow


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "components.cli", *args]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A workspace where nothing ran yet: each test runs the data stage it needs."""
    return make_workspace(tmp_path_factory.mktemp("faults") / "fresh", git=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """A workspace whose data and noise stages ran."""
    ws = make_workspace(tmp_path_factory.mktemp("faults") / "digits", git=False)
    run(["dvc", "repro", "noise"], ws)
    return ws


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> Path:
    """Stage one done with this project's cache.type hardlink,copy: outputs and cache objects are the same files."""
    ws = make_workspace(tmp_path_factory.mktemp("faults") / "cached", git=False)
    run(["dvc", "config", "cache.type", "hardlink,copy"], ws)
    run(["dvc", "repro", "stage1"], ws)
    return ws


# --- 1. a full disk while stage one writes its model files ---------------------------------------------------------


def test_a_disk_filling_up_during_stage_one_is_one_line_and_leaves_nothing(digits, tmp_path):
    with small_disk(tmp_path / "disk", "24m") as disk:
        ws = disk / "project"  # the whole project on the small disk
        shutil.copytree(digits, ws)
        # a model whose tensor records are larger than Python's write buffer: torch's zip writer then fails on a
        # direct write and raises its own RuntimeError ("unexpected pos"), which used to end in a traceback
        write_params(ws, model={"arch": "mlp", "hidden": 512}, runtime={"checkpoint_every": 0})
        filler = ws / "filler"
        with open(filler, "wb") as handle:  # fill the disk, then free a little: less than a model file needs
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
        os.truncate(filler, filler.stat().st_size - 65536)
        result = run(cli("stage1"), ws, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert one_error_line(result, "lnlflow stage1: error: ") == (
            "lnlflow stage1: error: outputs/stage1/base_model.pt: No space left on device")
        assert not (ws / "outputs").exists() or not any((ws / "outputs").iterdir())
        assert not (ws / "metrics").exists() and not leftovers(ws)
        filler.unlink()
        run(cli("stage1"), ws)
        run(cli("verify"), ws)


# --- 2, 8. .npy sources: a pickle, garbage, 0 bytes --------------------------------------------------------------


def npy_folder(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.arange(90) % 3
    np.save(folder / "X.npy", (rng.random((90, 1, 8, 8)) + y[:, None, None, None]).astype(np.float32))
    np.save(folder / "y.npy", y)
    np.save(folder / "classes.npy", np.array(["ant", "bee", "cow"]))
    np.save(folder / "trusted.npy", np.arange(90) < 12)
    return folder


def refused_then_clean(ws: Path, stage: str, line: str, repair) -> None:
    """`stage` fails with exactly `line` and writes nothing; after `repair()` it runs."""
    before = {p: sha256(p) for p in (ws / "data").rglob("*") if p.is_file()}
    result = run(cli(stage), ws, check=False)
    assert one_error_line(result, f"lnlflow {stage}: error: ") == line
    assert "Traceback" not in result.stdout and "allow_pickle" not in result.stderr
    assert {p: sha256(p) for p in (ws / "data").rglob("*") if p.is_file()} == before and not leftovers(ws)
    repair()
    run(cli(stage), ws)


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("X", pickle.dumps({"X": [[0.0] * 64] * 90}), "a Python pickle, which lnlflow never unpickles"),
    ("y", b"label\n0\n1\n2\n", "no .npy header, so not an array written by numpy.save"),
    ("classes", pickle.dumps(["ant", "bee", "cow"]), "a Python pickle, which lnlflow never unpickles"),
    ("trusted", bytes(range(256)) * 2, "no .npy header, so not an array written by numpy.save"),
    ("X", b"", "empty, 0 bytes"),  # numpy: EOFError
])
def test_an_npy_source_file_that_is_no_array_is_one_line(fresh, tmp_path, name, content, reason):
    folder = npy_folder(tmp_path / "arrays")
    (folder / f"{name}.npy").write_bytes(content)
    write_params(fresh, data={"source": "npy", "path": str(folder)})
    try:
        refused_then_clean(fresh, "data", f"lnlflow data: error: data.path {folder}/{name}.npy: not a valid .npy "
                                          f"file ({reason})", lambda: npy_folder(folder))
    finally:
        write_params(fresh)


# --- 9, 13. npz sources: a member that is no .npy; every row trusted ------------------------------------------------


def test_an_npz_member_that_is_no_npy_array_is_one_line(fresh, tmp_path):
    path = tmp_path / "arrays.npz"

    def good() -> None:
        np.savez(path, X=np.random.default_rng(0).random((60, 4)), y=np.arange(60) % 2)

    good()
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("classes.npy", b"cat,dog\n")  # numpy hands back raw bytes for it
    write_params(fresh, data={"source": "npz", "path": str(path)})
    try:
        refused_then_clean(fresh, "data", f"lnlflow data: error: data.path {path}: not a valid .npz file (member "
                                          "classes.npy: no .npy header, so not an array written by numpy.save)", good)
    finally:
        write_params(fresh)


def test_every_row_trusted_names_the_cause(fresh, tmp_path):
    path = tmp_path / "trusted.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.random((60, 4)), y=np.arange(60) % 2, trusted=np.ones(60, bool))
    write_params(fresh, data={"source": "npz", "path": str(path)})
    try:
        refused_then_clean(
            fresh, "data", "lnlflow data: error: class 0 has only 0 samples besides its 30 trusted ones (the validation "
                           "split): too few for a train/test split; mark fewer of its rows trusted",
            lambda: np.savez(path, X=rng.random((60, 4)), y=np.arange(60) % 2, trusted=np.arange(60) < 10))
    finally:
        write_params(fresh)


# --- 10, 11. params MLflow would refuse; noise without information --------------------------------------------------


def test_an_experiment_name_mlflow_refuses_stops_dvc_repro_before_any_work(fresh):
    write_params(fresh, tracking={"experiment": "e" * 600})
    try:
        result = run(["dvc", "repro"], fresh, check=False)
        line = "lnlflow inputs: error: params.yaml: tracking.experiment: 600 characters; MLflow allows at most 500 in an experiment name"
        assert result.returncode != 0 and line in result.stderr.splitlines() and "Traceback" not in result.stderr
        assert "Running stage 'data'" not in result.stdout
    finally:
        write_params(fresh)
    run(["dvc", "repro", "data"], fresh)


def test_symmetric_noise_without_information_is_refused_before_drawing(fresh, tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, X=np.random.default_rng(0).random((80, 4)), y=np.arange(80) % 2)
    write_params(fresh, data={"source": "npz", "path": str(path)}, noise={"rate": 0.6})
    try:
        result = run(["dvc", "repro", "noise"], fresh, check=False)
        line = ("lnlflow noise: error: noise.rate 0.6 leaves the labels without information: with 2 classes, "
                "symmetric_exclusive noise keeps the true label (1 - rate = 0.4) no more often than it gives each "
                "other class (rate/(C-1) = 0.6); use a rate below (C-1)/C = 0.5")
        assert result.returncode != 0 and line in result.stderr.splitlines() and "Traceback" not in result.stderr
        assert not (fresh / "data/noisy").exists() and not leftovers(fresh)
        write_params(fresh, data={"source": "npz", "path": str(path)}, noise={"rate": 0.4})
        run(["dvc", "repro", "noise"], fresh)
        write_params(fresh, noise={"rate": 0.9})  # digits: ten classes, known when params.yaml is read
        assert one_error_line(run(cli("data"), fresh, check=False), "lnlflow data: error: ").startswith(
            "lnlflow data: error: params.yaml: noise.rate 0.9 leaves the labels without information: with 10 classes")
    finally:
        write_params(fresh)


# --- 12, 14. the reviewer's corrections CSV -------------------------------------------------------------------------


def training_rows(ws: Path, k: int) -> list[int]:
    table = read_rows(ws / "data/prepared/rows.csv")
    return [int(r) for r in table.source_row[table.split == SPLITS.index("train")][:k]]


def reviewed(ws: Path, row: int, chosen: int) -> str:
    """A Label Studio JSON export in which a reviewer chose class `chosen` for source row `row` (digits: the
    stored row), as `lnlflow review export` made its task."""
    given = int(np.load(ws / "data/noisy/labels.npz")["y_noisy"][row])
    task = {"data": {"source_row": row, "given_class": str(given)}}
    return json.dumps(label_studio_export([task], {row: chosen}))


def test_a_corrections_row_with_an_extra_cell_is_one_line(digits, tmp_path):
    rows = training_rows(digits, 2)
    csv_path = tmp_path / "corrections.csv"
    bad = f"source_row,label,trusted\n{rows[0]},3,1\n{rows[1]},4,1,checked by Ann\n"
    csv_path.write_text(bad)
    write_params(digits, data={"corrections": str(csv_path)})
    try:
        line = (f"data.corrections {csv_path} line 3: 4 cells, but the header has 3 columns (source_row,label,trusted); "
                "remove the extra cell(s) or quote a cell holding a comma")
        refused_then_clean(digits, "noise", f"lnlflow noise: error: {line}",
                           lambda: csv_path.write_text(bad.replace(",checked by Ann", "")))
        csv_path.write_text(bad)  # `review import` refuses to merge into it (it would rewrite it without the cell)
        export = tmp_path / "export.json"
        export.write_text(reviewed(digits, rows[0], 5))
        result = run(cli("review", "import", str(export), "--corrections", str(csv_path)), digits, check=False)
        assert one_error_line(result, "lnlflow review: error: ") == f"lnlflow review: error: {line.split(' ', 1)[1]}"
        assert csv_path.read_text() == bad
    finally:
        write_params(digits)
        run(["dvc", "checkout", "--force", "noise"], digits)


def test_review_import_into_a_missing_folder_is_one_line(digits, tmp_path):
    export = tmp_path / "export.json"
    row = training_rows(digits, 1)[0]
    export.write_text(reviewed(digits, row, 5))
    target = tmp_path / "nonexistent_dir" / "x.csv"
    try:
        result = run(cli("review", "import", str(export), "--corrections", str(target)), digits, check=False)
        assert one_error_line(result, "lnlflow review: error: ") == (
            f"lnlflow review: error: {target}: its folder {target.parent} does not exist; create it first or name "
            "another corrections file")
        assert not target.parent.exists() and yaml.safe_load((digits / "params.yaml").read_text())["data"][
            "corrections"] is None
        run(cli("review", "import", str(export), "--corrections", str(tmp_path / "x.csv")), digits)
        assert (tmp_path / "x.csv").read_text() == f"source_row,label,trusted\n{row},5,1\n"
    finally:
        write_params(digits)


# --- 3-6. damaged outputs that DVC also caches ----------------------------------------------------------------------

SHARD = Path("data/prepared/X/shard-00000.npy")
BASE = Path("outputs/stage1/base_model.pt")
DAMAGED = "{path}: damaged after it was written (its sha256 differs from the one in {record})"


def flip(path: Path, at: int, count: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[at:at + count] = bytes(b ^ 0xFF for b in data[at:at + count])
    with open(path, "r+b") as handle:  # in place, as a stray write would: the cache object is the same file
        handle.write(data)


def intact(ws: Path) -> None:
    """Every output matches its record again and is again one file with its DVC cache object."""
    run(cli("verify"), ws)
    assert (ws / SHARD).stat().st_nlink == 2 and (ws / BASE).stat().st_nlink == 2


def test_a_truncated_cached_shard_is_remade_by_dvc_repro(cached):
    shard = cached / SHARD
    assert shard.stat().st_nlink == 2  # the workspace file is the cache object
    os.truncate(shard, 300000)
    result = run(["dvc", "repro", "stage1"], cached)
    assert ("inputs: " + DAMAGED.format(path=SHARD, record="data/prepared/X/store.json") + "; deleted it and its copy "
            "in the DVC cache (the same file), so that this dvc repro runs data again") in result.stdout.splitlines()
    assert "Running stage 'data'" in result.stdout and "Traceback" not in result.stdout + result.stderr
    intact(cached)
    os.truncate(shard, 300000)  # outside dvc repro: the stage reading it names the repair
    line = one_error_line(run(cli("stage1"), cached, check=False), "lnlflow stage1: error: ")
    assert line == ("lnlflow stage1: error: " + DAMAGED.format(path=SHARD, record="data/prepared/X/store.json")
                    + "; removed its copy in the DVC cache (the same file); repair: dvc repro -f -s data")
    run(line.rsplit("repair: ", 1)[1].split(), cached)
    intact(cached)
    run(["dvc", "repro", "stage1"], cached)


def test_a_shard_overwritten_with_bytes_of_the_same_size_is_not_trained_on(cached):
    before = sha256(cached / BASE)
    flip(cached / SHARD, 1000, count=4096)
    result = run(cli("stage1"), cached, check=False)
    assert one_error_line(result, "lnlflow stage1: error: ") == (
        "lnlflow stage1: error: " + DAMAGED.format(path=SHARD, record="data/prepared/X/store.json")
        + "; removed its copy in the DVC cache (the same file); repair: dvc repro -f -s data")
    assert "epoch" not in result.stdout and sha256(cached / BASE) == before and not leftovers(cached)
    run(["dvc", "repro", "-f", "-s", "data"], cached)
    intact(cached)
    run(["dvc", "repro", "stage1"], cached)


def test_flipped_bytes_at_the_end_of_a_cached_model_are_remade_by_dvc_repro(cached):
    size = (cached / BASE).stat().st_size
    flip(cached / BASE, size - 40)
    result = run(["dvc", "repro", "stage1"], cached)
    assert ("inputs: " + DAMAGED.format(path=BASE, record=f"{BASE}.sha256") + "; deleted it and its copy in the DVC "
            "cache (the same file), so that this dvc repro runs stage1 again") in result.stdout.splitlines()
    assert "Running stage 'stage1'" in result.stdout
    intact(cached)
    flip(cached / BASE, size - 40)
    line = one_error_line(run(cli("stage2"), cached, check=False), "lnlflow stage2: error: ")
    assert line == ("lnlflow stage2: error: " + DAMAGED.format(path=BASE, record=f"{BASE}.sha256")
                    + "; removed its copy in the DVC cache (the same file); repair: dvc repro -f -s stage1")
    assert not (cached / "outputs/stage2").exists()
    run(line.rsplit("repair: ", 1)[1].split(), cached)
    intact(cached)


def test_flipped_bytes_inside_a_models_weights_are_not_loaded(cached):
    import torch

    tensor = next(iter(torch.load(cached / BASE, weights_only=True)["state_dict"].values())).numpy().tobytes()
    flip(cached / BASE, (cached / BASE).read_bytes().index(tensor[:32]), count=8)
    torch.load(cached / BASE, weights_only=True)  # torch alone loads the damaged weights without a word
    line = one_error_line(run(cli("stage2"), cached, check=False), "lnlflow stage2: error: ")
    assert line == ("lnlflow stage2: error: " + DAMAGED.format(path=BASE, record=f"{BASE}.sha256")
                    + "; removed its copy in the DVC cache (the same file); repair: dvc repro -f -s stage1")
    run(["dvc", "repro", "-f", "-s", "stage1"], cached)
    intact(cached)
    run(["dvc", "repro", "stage2"], cached)


# --- 7. a project moved with its MLflow store -----------------------------------------------------------------------


def test_a_moved_project_keeps_every_registered_version_loadable(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own sqlite:///<root>/mlflow.db
    old = make_workspace(tmp_path / "proj", git=False)
    run(["dvc", "repro"], old)
    run(cli("track"), old)
    new = tmp_path / "proj2"
    old.rename(new)
    write_params(new, stage2={"method": "ce"})
    run(["dvc", "repro"], new)
    result = run(cli("track"), new)
    assert result.stdout.splitlines()[0] == (
        f"track: this project's MLflow store was used from {old}; its artifact locations now point into "
        f"{new}/mlartifacts (5 records)")
    assert "registered as new version 2" in result.stdout and "Traceback" not in result.stderr
    assert not old.exists()  # nothing re-created at the old place
    load = ("import mlflow, numpy as np; from sklearn.datasets import load_digits; "
            "mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
            "print([mlflow.pyfunc.load_model(f'models:/lnlflow-digits/{v}').predict(load_digits().images[:3]).shape "
            "for v in (1, 2)])")
    assert run([sys.executable, "-c", load], new).stdout.strip() == "[(3, 12), (3, 12)]"
    assert "this project's MLflow store" not in run(cli("track"), new).stdout  # re-anchored once
