"""dvc.lock is the same text whether `dvc repro` or the Prefect flow's in-process stages wrote it."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import make_workspace, run

FLOW_STAGES = """
import sys
from pathlib import Path
from flows.dvc_ops import reproduce
from flows.pipeline import apply_run_overrides
root = Path(sys.argv[1])
apply_run_overrides(root, {"stage2.lr": 0.02})  # as a flow run with an override does, before its stages
for stage in ("inputs", "data"):
    reproduce(root, stage)
"""


@pytest.mark.slow
def test_flow_and_cli_write_the_same_lock(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=False)
    run([sys.executable, "-c", "from pathlib import Path; from components.params_file import apply_overrides; "
         "apply_overrides(Path('params.yaml'), {'stage2.lr': 0.02})"], ws)  # the same params.yaml both ways
    run(["dvc", "repro", "data"], ws)
    by_cli = (ws / "dvc.lock").read_text()
    assert "classes:\n" in by_cli
    (ws / "dvc.lock").unlink()
    run([sys.executable, "-c", FLOW_STAGES, str(ws)], ws)
    assert (ws / "dvc.lock").read_text() == by_cli
