"""Training without a held-out split (data.val_fraction: 0), end to end through dvc repro: the selection rule
falls back to label-free selection, then to the last epoch, and says so; a method needing trusted labels is
refused before any stage runs."""

from __future__ import annotations

import csv
import json

import pytest

from components.summary import render
from tests.conftest import make_workspace, run, write_params

pytestmark = pytest.mark.slow


def test_no_validation_split_selects_label_free_then_last_and_refuses_meta_sets(tmp_path, mlflow_db):
    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, data={"val_fraction": 0.0}, stage2={"method": "ce"})
    run(["dvc", "repro"], ws)
    data = json.loads((ws / "data/prepared/manifest.json").read_text())
    assert data["split"]["val"] == 0 and data["split"]["train"] + data["split"]["test"] == data["n_samples"]
    metrics = json.loads((ws / "metrics/eval.json").read_text())
    stage2 = json.loads((ws / "metrics/stage2.json").read_text())
    assert metrics["selection_rule"] == stage2["selection_rule"] == "labelfree"
    assert metrics["selected_epoch"] == metrics["labelfree_epochs"][0]
    assert metrics["val_acc_clean_selected"] is None and stage2["val_acc_selected"] is None
    assert metrics["test_acc_selected"] == metrics["test_acc_labelfree_single"]
    assert "lowest pool CLID" in metrics["notes"]["test_acc_selected"]
    assert "(no validation split: checkpoint selected by lowest CLID, label-free, epoch" in render(ws)
    with open(ws / "reports/label_issues.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["model_selected_by"] for row in rows} == {"labelfree"}
    # Tracked and registered without a validation score: the first version is champion, tagged with its rule.
    run(["lnlflow", "track"], ws)
    from mlflow import MlflowClient

    version = MlflowClient(mlflow_db).get_model_version_by_alias("lnlflow-digits", "champion")
    assert version.tags["validation_status"] == "no_val" and version.tags["selection_rule"] == "labelfree"
    assert "val_acc_clean_selected" not in version.tags

    write_params(ws, data={"val_fraction": 0.0}, stage2={"method": "ce", "selection": {"enabled": False}})
    run(["dvc", "repro"], ws)
    metrics = json.loads((ws / "metrics/eval.json").read_text())
    assert metrics["selection_rule"] == "last" and metrics["selected_epoch"] == 2
    assert metrics["test_acc_selected"] == metrics["test_acc_last"]

    write_params(ws, data={"val_fraction": 0.0}, stage2={"method": "mwnet"})
    refused = run(["dvc", "repro"], ws, check=False)
    assert refused.returncode != 0 and "Running stage 'stage1'" not in refused.stdout
    assert ("stage2.method 'mwnet' needs a trusted validation split (its meta set), but data.val_fraction is 0 "
            "and source 'digits' marks no trusted rows") in refused.stdout + refused.stderr
