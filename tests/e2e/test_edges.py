"""Bad files and unwritable outputs through the real commands: one stderr line, no traceback, nothing half-written."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace whose data and noise stages ran (under umask 022)."""
    ws = make_workspace(tmp_path_factory.mktemp("edges") / "ws", git=False)
    old = os.umask(0o022)
    try:
        run(["dvc", "repro", "noise"], ws)
    finally:
        os.umask(old)
    return ws


def one_error_line(result, prefix: str) -> str:
    """The single stderr line of a failed command (no traceback, no advice to load a file unsafely)."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix) and "weights_only" not in result.stderr
    return lines[0]


def leftovers(ws: Path) -> list[Path]:
    return [p for p in ws.rglob(".*.tmp") if ".dvc" not in p.parts]


def test_stage_outputs_get_the_umask_mode(ws):
    modes = {p: stat.S_IMODE((ws / p).stat().st_mode) for p in ("data/prepared", "data/prepared/manifest.json")}
    assert modes == {"data/prepared": 0o755, "data/prepared/manifest.json": 0o644}


def test_an_npz_of_pickled_objects_is_one_line_and_writes_nothing(ws, tmp_path):
    bad = tmp_path / "objects.npz"
    np.savez(bad, X=np.ones((20, 4)), y=np.array([{"label": i % 2} for i in range(20)], dtype=object))
    write_params(ws, data={"source": "npz", "path": str(bad)})
    before = (ws / "data/prepared/dataset.npz").read_bytes()
    try:
        line = one_error_line(run(["lnlflow", "data"], ws, check=False), "lnlflow data: error: ")
        assert line == (f"lnlflow data: error: data.path {bad}: not a valid .npz file (it holds object arrays; "
                        "lnlflow loads numeric and text arrays only, never pickled objects)")
        assert (ws / "data/prepared/dataset.npz").read_bytes() == before and not leftovers(ws)
        repro = run(["dvc", "repro", "data"], ws, check=False)
        assert repro.returncode != 0 and line in repro.stderr and "Traceback" not in repro.stderr
        assert "weights_only" not in repro.stderr and "allow_pickle" not in repro.stderr
    finally:
        write_params(ws)
        run(["dvc", "checkout", "data"], ws)  # DVC deleted the stage's outputs before it ran the failing command


def test_a_file_where_the_outputs_folder_goes_stops_stage1_before_training(ws):
    (ws / "outputs").write_text("in the way")
    try:
        result = run(["lnlflow", "stage1"], ws, check=False)
        assert one_error_line(result, "lnlflow stage1: error: ") == (
            "lnlflow stage1: error: outputs: a file is where the folder for outputs/stage1 should be; move it away")
        assert "epoch" not in result.stdout  # stopped before training
        assert not (ws / "metrics").exists() and not (ws / ".lnlflow/checkpoints/stage1").exists()
    finally:
        (ws / "outputs").unlink()


def test_weights_holding_a_python_object_are_refused_in_one_line(ws, tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save({"head.weight": torch.zeros(10, 4), "note": argparse.Namespace(source="elsewhere")}, weights)
    write_params(ws, model={"weights": str(weights)})
    try:
        result = run(["lnlflow", "stage1"], ws, check=False)
        assert one_error_line(result, "lnlflow stage1: error: ") == (
            f"lnlflow stage1: error: model.weights: {weights}: not a state_dict of tensors "
            "(it holds a pickled argparse.Namespace object, which lnlflow never unpickles)")
        assert not (ws / "outputs").exists() and not (ws / "metrics").exists() and not leftovers(ws)
    finally:
        write_params(ws)
