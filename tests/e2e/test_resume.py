"""Crash and resume through the real entry points: `dvc repro` is killed (`kill -9`, the whole process group) in
the middle of stage one and again in the middle of stage two; each rerun resumes the killed stage from its last
epoch checkpoint, no half-written output survives, and the results equal those of an uninterrupted run. The killed
workspace streams its batches from the on-disk store (runtime.data_on_device: never) while the reference holds
the data in memory, so the loader's order and its resume are checked against the in-memory path too.

The kill is made to land mid-training with `LNLFLOW_TEST_EPOCH_DELAY` (components.training.resume.DELAY_ENV):
every stage sleeps that many seconds after each checkpoint write, which only widens the window between epochs;
it changes no result. The uninterrupted reference runs at the same time in a second workspace.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from components.io import read_tsv
from components.training.resume import DELAY_ENV
from tests.conftest import BIN, make_workspace, run, write_params

pytestmark = pytest.mark.slow

DELAY = "0.3"
TIMING = {"seconds", "train_seconds", "method_seconds", "train_cpu_seconds", "method_cpu_seconds", "seconds_per_epoch",
          "train_seconds_per_epoch", "train_cpu_seconds_per_epoch"}
SETTINGS = {"stage1": {"epochs": 4}, "stage2": {"epochs": 3}}


def workspace(path: Path, on_device: str) -> Path:
    ws = make_workspace(path, git=True)
    write_params(ws, **SETTINGS, runtime={"data_on_device": on_device})
    return ws


def start_repro(ws: Path, log: Path, *, delay: str | None) -> subprocess.Popen:
    """`dvc repro stage2` in its own process group (so one signal kills DVC and the stage it runs)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop(DELAY_ENV, None)
    if delay is not None:
        env[DELAY_ENV] = delay
    with open(log, "w") as out:
        return subprocess.Popen(["dvc", "repro", "stage2"], cwd=ws, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def checkpoint_epoch(ws: Path, stage: str) -> int:
    path = ws / ".lnlflow/checkpoints" / stage / "checkpoint.pt"
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def kill_at(proc: subprocess.Popen, ws: Path, stage: str, epoch: int, log: Path, *, timeout: float = 120) -> None:
    """`kill -9` the process group once `stage`'s checkpoint reaches `epoch`."""
    deadline = time.monotonic() + timeout
    while checkpoint_epoch(ws, stage) < epoch:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{stage} never reached epoch {epoch} before the kill:\n{log.read_text()}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def leftovers(ws: Path) -> list[Path]:
    """Temporary files or folders of atomic writes anywhere outside the checkpoints."""
    return [p for p in ws.rglob(".*.tmp") if ".lnlflow" not in p.parts and ".dvc" not in p.parts]


def untimed(value):
    """`value` without timing fields, NaN as None (so equal logs compare equal)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def same_files(a: Path, b: Path, name: str) -> None:
    """Equal results: JSON and TSV without timing fields, arrays and model weights exactly."""
    if name.endswith(".json"):
        assert untimed(json.loads((a / name).read_text())) == untimed(json.loads((b / name).read_text())), name
    elif name.endswith(".tsv"):
        assert untimed(read_tsv(a / name)) == untimed(read_tsv(b / name)), name
    elif name.endswith(".npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            assert x.files == y.files and all(np.array_equal(x[k], y[k], equal_nan=True) for k in x.files), name
    else:
        x, y = torch.load(a / name, weights_only=True), torch.load(b / name, weights_only=True)
        assert x["state_dict"].keys() == y["state_dict"].keys(), name
        assert all(torch.equal(x["state_dict"][k], y["state_dict"][k]) for k in x["state_dict"]), name
        assert x.get("meta") == y.get("meta"), name


def test_killed_stages_resume_to_the_uninterrupted_result(tmp_path):
    straight, killed = workspace(tmp_path / "straight", "always"), workspace(tmp_path / "killed", "never")
    reference = start_repro(straight, tmp_path / "straight.log", delay=None)

    first = start_repro(killed, tmp_path / "first.log", delay=DELAY)
    kill_at(first, killed, "stage1", 2, tmp_path / "first.log")
    assert not (killed / "outputs/stage1").exists() and not (killed / "metrics/stage1_log.tsv").exists()
    assert not leftovers(killed)

    second = start_repro(killed, tmp_path / "second.log", delay=DELAY)
    kill_at(second, killed, "stage2", 1, tmp_path / "second.log")
    log = (tmp_path / "second.log").read_text()
    assert "stage1: resuming from epoch" in log and "/4 checkpoint" in log, log
    assert not (killed / ".lnlflow/checkpoints/stage1").exists()  # stage one finished: its checkpoint is gone
    assert {p.name for p in (killed / "outputs/stage1").iterdir()} == {
        "base_model.pt", "last_model.pt", "dynamics.npz", "base_model.pt.sha256", "last_model.pt.sha256"}
    assert not (killed / "outputs/stage2").exists() and not (killed / "metrics/stage2.json").exists()
    assert not leftovers(killed)

    final = run(["dvc", "repro", "stage2"], killed)
    assert "Running stage 'stage1'" not in final.stdout, final.stdout
    assert "stage2: resuming from epoch" in final.stdout and "/3 checkpoint" in final.stdout, final.stdout
    assert not list((killed / ".lnlflow/checkpoints").rglob("*.pt"))

    assert reference.wait(timeout=120) == 0, (tmp_path / "straight.log").read_text()
    for name in ("metrics/stage1.json", "metrics/stage1_log.tsv", "outputs/stage1/dynamics.npz",
                 "outputs/stage1/base_model.pt", "metrics/stage2.json", "metrics/stage2_log.tsv",
                 "outputs/stage2/model_last.pt", "outputs/stage2/model_selected.pt", "outputs/stage2/scores.npz"):
        same_files(straight, killed, name)
