"""docs/methods/switching.md's `dvc exp run -S` syntax, as DVC takes it: a setting params.yaml does not hold (another
method's) needs `+`, and the queued experiment's params.yaml then validates with it (queued only: nothing trains)."""

from __future__ import annotations

import pytest
import yaml

from components.config import validate_params
from tests.conftest import ROOT, make_workspace, run

pytestmark = pytest.mark.slow

ABSENT = ["-S", "stage2.method=mwnet", "-S", "+stage2.mwnet.meta_lr=0.01"]


def test_an_absent_setting_takes_a_plus_and_the_page_says_so(tmp_path):
    ws = make_workspace(tmp_path / "ws", git=True)
    assert "mwnet" not in yaml.safe_load((ws / "params.yaml").read_text())["stage2"]
    refused = run(["dvc", "exp", "run", "--queue", "-S", "stage2.method=mwnet", "-S", "stage2.mwnet.meta_lr=0.01"], ws,
                  check=False)
    assert refused.returncode != 0 and "+stage2.mwnet.meta_lr=0.01" in refused.stdout + refused.stderr
    run(["dvc", "exp", "run", "--queue", *ABSENT], ws)
    queued = run(["git", "show", "refs/exps/celery/stash:params.yaml"], ws).stdout
    stage2 = validate_params(yaml.safe_load(queued)).stage2
    assert stage2.method == "mwnet" and stage2.mwnet.meta_lr == 0.01 and stage2.mwnet.meta_optimizer == "adam"
    page = (ROOT / "docs/methods/switching.md").read_text()
    assert "dvc exp run " + " ".join(ABSENT) in page
