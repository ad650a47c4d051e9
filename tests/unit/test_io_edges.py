"""Edge cases of writing and reading files: full disk, unwritable outputs, modes, refused pickles, interrupts."""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import components.io as cio
from components.errors import LnlError
from components.io import (atomic_dir, check_writable, load_npy, load_torch, read_npz_arrays, read_tsv, save_torch,
                           write_text)
from components.models import load_model_checkpoint, save_model_checkpoint
from components.models.weights import read_state_dict
from components.stages.common import run_stage
from components.training.resume import ResumeCheckpoint
from tests.unit.training.test_resume import train_ce
from tests.conftest import small_disk

# What torch.save raises when the disk fills up under its zip writer (first lines of a 35-line message).
TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1216 vs 1110\n"
                          "frame #0: c10::ThrowEnforceNotMet(char const*, int, char const*, std::string, void const*)")


class Foo:
    """A class torch's weights-only unpickler refuses."""


def one_line_without_advice(message: str) -> None:
    assert "\n" not in message.strip()
    for advice in ("weights_only", "allow_pickle", "trust", "unsafe"):
        assert advice not in message, message


# --- 1. a checkpoint write that fails ------------------------------------------------------------------------


def _full_disk(monkeypatch, *, after: int = 0, kind: str = "enospc") -> None:
    """Checkpoint writes after the first `after` fail: the kernel's own ENOSPC (writing to /dev/full), or
    torch's RuntimeError."""
    calls = {"n": 0}
    real_save = torch.save

    def save(payload, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= after:
            return real_save(payload, handle, *args, **kwargs)
        if kind == "torch":
            raise TORCH_FULL
        with open("/dev/full", "wb") as full:
            real_save(payload, full)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("kind", ["enospc", "torch"])
def test_a_failed_checkpoint_write_is_one_warning_and_training_goes_on(kind, tmp_path, monkeypatch, capsys):
    if kind == "enospc" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    _full_disk(monkeypatch, after=1, kind=kind)
    _, rows, _, resume = train_ce(tmp_path, epochs=3)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(rows) == 3
    assert err == [f"ce: warning: could not write checkpoint {resume.path} (No space left on device); "
                   "training continues without it"]
    assert [p.name for p in resume.path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left
    monkeypatch.undo()
    assert torch.load(resume.path, weights_only=True)["epoch"] == 1  # the one written before stays valid


# --- 2. outputs that cannot be written ------------------------------------------------------------------------


def test_a_file_where_an_output_folder_goes(tmp_path):
    (tmp_path / "outputs").write_text("not a folder")
    with pytest.raises(LnlError) as info:
        check_writable(files=[tmp_path / "metrics/stage1.json"], folders=[tmp_path / "outputs/stage1"])
    assert str(info.value) == f"{tmp_path / 'outputs'}: a file is where the folder for {tmp_path / 'outputs/stage1'} " \
                              "should be; move it away"
    (tmp_path / "plots").symlink_to(tmp_path / "gone")
    with pytest.raises(LnlError, match="plots: a broken link is where the folder for"):
        check_writable(folders=[tmp_path / "plots/x"])
    (tmp_path / "metrics/stage1.json").mkdir(parents=True)
    with pytest.raises(LnlError, match="stage1.json: a folder is where this stage writes a file"):
        check_writable(files=[tmp_path / "metrics/stage1.json"])


def test_an_unwritable_folder_is_named_before_any_work(tmp_path, monkeypatch):
    """Root ignores permission bits, so the refusal is the OS error a read-only folder gives, raised by the
    probe file's creation (what check_writable really does: it creates and deletes a file there)."""
    locked = tmp_path / "outputs"
    (locked / "stage1").mkdir(parents=True)
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if Path(dir) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(cio.tempfile, "mkstemp", mkstemp)
    check_writable(folders=[tmp_path / "metrics"])  # the folder above (tmp_path) is writable
    with pytest.raises(LnlError) as info:
        check_writable(folders=[locked / "stage1"])
    assert str(info.value) == f"{locked}: cannot write there (Permission denied), needed for {locked / 'stage1'}"
    assert not list(tmp_path.rglob(".lnlflow-probe-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the probe test above covers root)")
def test_a_read_only_folder_for_real(tmp_path):
    locked = tmp_path / "outputs"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(LnlError, match="outputs: cannot write there \\(Permission denied\\)"):
            check_writable(folders=[locked / "stage1"])
    finally:
        locked.chmod(0o755)


# --- 4. files that are not what they claim ----------------------------------------------------------------------


@pytest.fixture()
def bad_files(tmp_path) -> dict[str, Path]:
    torch.save({"w": torch.ones(2), "x": Foo()}, tmp_path / "object.pt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"w": 1}))
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(400))
    torch.save({"w": torch.ones(1000)}, tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:900])
    return {name: tmp_path / name for name in ("object.pt", "plain.pkl", "random.pt", "cut.pt")}


def test_refused_torch_files_are_one_line_without_unsafe_advice(bad_files, tmp_path, capsys):
    refused = "it holds a pickled tests.unit.test_io_edges.Foo object, which lnlflow never unpickles"
    expected = {"object.pt": refused,
                "plain.pkl": "not a file written by torch.save", "random.pt": "not a file written by torch.save",
                "cut.pt": "truncated or corrupt archive"}
    for name, path in bad_files.items():
        with pytest.raises(LnlError) as weights:
            read_state_dict(path)
        assert str(weights.value) == f"model.weights: {path}: not a state_dict of tensors ({expected[name]})"
        with pytest.raises(LnlError) as model:
            load_model_checkpoint(path)
        assert str(model.value) == f"{path}: not a valid lnlflow model file ({expected[name]})"
        one_line_without_advice(str(weights.value))
    assert capsys.readouterr().err == ""  # torch's protocol warning is silenced too
    torch.save({"w": torch.ones(1)}, tmp_path / "not_model.pt")
    with pytest.raises(LnlError, match=r"not_model.pt: not a valid lnlflow model file \(KeyError: 'arch'\)"):
        load_model_checkpoint(tmp_path / "not_model.pt")
    torch.save({"w": [1, 2]}, tmp_path / "not_tensors.pt")
    with pytest.raises(LnlError, match="not_tensors.pt: not a state_dict of tensors"):
        read_state_dict(tmp_path / "not_tensors.pt")


def test_a_refused_resume_checkpoint_is_discarded_with_its_reason(bad_files, tmp_path, capsys):
    resume = ResumeCheckpoint("ce", "k", every=1, root=tmp_path / "ck")
    resume.path.parent.mkdir(parents=True)
    resume.path.write_bytes(bad_files["object.pt"].read_bytes())
    assert resume.resume({}, 3) == 0 and not resume.path.exists()
    out = capsys.readouterr().out.strip()
    assert out == (f"ce: discarding an unreadable checkpoint {resume.path} "
                   "(it holds a pickled tests.unit.test_io_edges.Foo object, which lnlflow never unpickles)")


def test_invalid_npz_files(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, X=np.ones((50, 4)), y=np.arange(50) % 2)
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(600))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    np.savez(tmp_path / "object.npz", X=np.ones((2, 2)), y=np.array([{"a": 1}, None], dtype=object))
    np.save(tmp_path / "single.npy", np.ones(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    reasons = {"random.npz": "not a zip archive of arrays", "cut.npz": "truncated or corrupt archive",
               "object.npz": "it holds object arrays; lnlflow loads numeric and text arrays only, "
                             "never pickled objects",
               "single.npz": "a single .npy array, not an .npz archive"}
    for name, reason in reasons.items():
        with pytest.raises(LnlError) as info:
            read_npz_arrays(tmp_path / name, ("X", "y"), where=f"data.path {name}")
        assert str(info.value).startswith(f"data.path {name}: not a valid .npz file ({reason}")
        one_line_without_advice(str(info.value))
    with pytest.raises(LnlError, match=r"absent.npz: cannot read it \(No such file or directory\)"):
        read_npz_arrays(tmp_path / "absent.npz", ("X",))
    with pytest.raises(LnlError, match=r"good.npz: lacks array\(s\) Z \(hint\)"):
        read_npz_arrays(good, ("Z",), lacking=" (hint)")


def _npy(kind: str) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(40, dtype=np.int64).reshape(10, 4))
    good = buffer.getvalue()
    return {"pickle": pickle.dumps([1, 2, 3]), "garbage": b"label,pixels\n3,0 0 0\n", "empty": b"",
            "cut": good[:200], "header": good[:10] + b"{'descr': <i8" + good[23:]}[kind]


NPY_REASONS = {"pickle": "a Python pickle, which lnlflow never unpickles",
               "garbage": "no .npy header, so not an array written by numpy.save", "empty": "empty, 0 bytes",
               "cut": "truncated: Failed to read all data for array. Expected (10, 4) = 40 elements, could only "
                      "read 9 elements. (file seems not fully written?)",
               "header": "corrupt .npy header"}


@pytest.mark.parametrize("kind", NPY_REASONS)
def test_invalid_npy_files_are_one_line_and_garbage_is_not_called_a_pickle(kind, tmp_path):
    (tmp_path / "X.npy").write_bytes(_npy(kind))
    with pytest.raises(LnlError) as error:
        load_npy(tmp_path / "X.npy", where="data.path d/X.npy")
    assert str(error.value) == f"data.path d/X.npy: not a valid .npy file ({NPY_REASONS[kind]})"
    one_line_without_advice(str(error.value))


@pytest.mark.parametrize("kind", ["pickle", "garbage", "empty"])
def test_an_npz_member_that_is_no_npy_array_is_one_line(kind, tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:  # numpy would hand its raw bytes back
        archive.writestr("X.npy", _npy(kind))
        archive.writestr("y.npy", _npy("cut"))
    with pytest.raises(LnlError) as error:
        read_npz_arrays(tmp_path / "bad.npz", ("X", "y"), where="data.path bad.npz")
    assert str(error.value) == f"data.path bad.npz: not a valid .npz file (member X.npy: {NPY_REASONS[kind]})"


@pytest.fixture()
def full_tmpfs(tmp_path):
    """A 1 MiB tmpfs (a disk that fills up for real), unmounted afterwards; skipped where mounting is not allowed."""
    with small_disk(tmp_path / "small", "1m") as mount:
        yield mount


def test_torch_filling_the_disk_is_the_one_disk_full_line(full_tmpfs, capsys, monkeypatch):
    monkeypatch.chdir(full_tmpfs)

    def write_model() -> None:  # torch reports the failed write as "[enforce fail at inline_container.cc] unexpected pos"
        with atomic_dir("outputs/stage1") as out:
            save_model_checkpoint(out / "base_model.pt", {"arch": "mlp"}, {"w": torch.zeros(600_000)})

    assert run_stage("stage1", write_model) == 1
    assert capsys.readouterr().err == "lnlflow stage1: error: outputs/stage1/base_model.pt: No space left on device\n"
    assert [p.name for p in Path("outputs").iterdir()] == []  # nothing half-written
    save_torch({"w": torch.zeros(1000)}, "outputs/ok.pt")  # the space is free again: a later write succeeds
    assert torch.load("outputs/ok.pt", weights_only=True)["w"].shape == (1000,)


def test_a_missing_or_corrupt_training_log_is_one_line(tmp_path):
    log = tmp_path / "log.tsv"
    with pytest.raises(LnlError, match="log.tsv: file not found"):
        read_tsv(log)
    for text, reason in [("epoch\tloss\n1\t0.5\n2\n", "corrupt table at line 3 (1 cells, expected 2)"),
                         ("epoch\tloss\n1\tnan\n2\tlots\n", "corrupt table at line 3 (could not convert"),
                         ("epoch\tloss\n", "corrupt table (no rows)")]:
        log.write_text(text)
        with pytest.raises(LnlError) as info:
            read_tsv(log)
        assert str(info.value).startswith(f"{log}: {reason}")
    log.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LnlError, match="not text"):
        read_tsv(log)


# --- 5. modes follow the umask -------------------------------------------------------------------------------------


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_umask_mode(tmp_path, umask_022):
    assert cio.umask() == 0o022
    write_text(tmp_path / "a.txt", "x")
    save_torch({"w": torch.ones(1)}, tmp_path / "m.pt")
    with atomic_dir(tmp_path / "stage") as out:
        np.savez(out / "d.npz", y=np.ones(1))
        save_model_checkpoint(out / "model.pt", {"arch": "mlp"}, {"w": torch.ones(1)})
    assert [mode(tmp_path / n) for n in ("a.txt", "m.pt", "stage", "stage/d.npz", "stage/model.pt")] == \
           [0o644, 0o644, 0o755, 0o644, 0o644]
    os.umask(0o027)
    write_text(tmp_path / "b.txt", "x")
    with atomic_dir(tmp_path / "other"):
        pass
    assert (mode(tmp_path / "b.txt"), mode(tmp_path / "other")) == (0o640, 0o750)


def test_a_resume_checkpoint_gets_the_umask_mode(tmp_path, umask_022):
    _, _, _, resume = train_ce(tmp_path, epochs=1)
    assert (mode(resume.path), mode(resume.path.parent)) == (0o644, 0o755)


# --- 6. what an interrupt says ----------------------------------------------------------------------------------


def _interrupted() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(("name", "line"), [("stage1", "lnlflow stage1: interrupted; no outputs were written"),
                                            ("summary", "lnlflow summary: interrupted"),
                                            ("track", "lnlflow track: interrupted")])
def test_only_the_dvc_stages_promise_nothing_was_written(name, line, capsys):
    assert run_stage(name, _interrupted) == 130
    assert capsys.readouterr().err == line + "\n"


def test_a_disk_that_fills_up_after_the_checks_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def full() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "outputs/.stage1.k2_9.tmp/.base_model.pt.x1.tmp")

    assert run_stage("stage1", full) == 1
    assert capsys.readouterr().err == "lnlflow stage1: error: outputs/stage1/base_model.pt: No space left on device\n"

    def full_through_a_handle() -> None:  # numpy and torch write through handles: their OSError names no file
        with atomic_dir("outputs-that-fill-up") as out:
            (out / "x").write_text("x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    assert run_stage("stage1", full_through_a_handle) == 1
    assert capsys.readouterr().err == "lnlflow stage1: error: outputs-that-fill-up: No space left on device\n"
    assert not list(Path().glob("*outputs-that-fill-up*"))

    def missing() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    with pytest.raises(FileNotFoundError):  # only full or read-only disks: anything else is a bug to see
        run_stage("stage1", missing)


def test_load_torch_keeps_what_it_may_load(tmp_path):
    torch.save({"w": torch.arange(3)}, tmp_path / "ok.pt")
    assert torch.equal(load_torch(tmp_path / "ok.pt", "unused")["w"], torch.arange(3))
