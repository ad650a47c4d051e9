"""Label Studio round trip: export tasks with pre-annotations, import a Label Studio JSON export as corrections."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from components.data.store import write_store
from components.errors import LnlError
from components.review import cli
from components.review.label_studio import (corrections_from_export, export_tasks, label_config,
                                            merge_corrections)

REPO = Path(__file__).resolve().parents[3]
CLASSES = [str(d) for d in range(10)]
# report rows: (source_row, dataset_row, given, predicted, p_label_wrong, verified), most doubtful first
REPORT = [(7, 3, 1, 7, 0.95, 0), (2, 1, 3, 8, 0.90, 0), (5, 2, 4, 4, 0.60, 0), (0, 0, 0, 0, 0.10, 0),
          (9, 5, 9, 9, 0.0, 1)]


def _project(root: Path) -> None:
    """A tiny pipeline state: 8 load_digits images stored as rows 0..7, the report over the training rows."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    source_rows = [0, 2, 5, 7, 1, 9, 3, 4]  # dataset row → source row
    X = (digits.images[source_rows] / 16.0).astype(np.float32)[:, None]
    prepared = root / "data/prepared"
    prepared.mkdir(parents=True)
    np.savez(prepared / "dataset.npz", y=digits.target[source_rows])
    write_store(prepared / "X", X)
    (prepared / "manifest.json").write_text(json.dumps({"name": "digits", "classes": CLASSES}))
    splits = ["train"] * 6 + ["test"] * 2
    (prepared / "rows.csv").write_text("row,split,source_row,file\n" + "".join(
        f"{i},{s},{r},\n" for i, (s, r) in enumerate(zip(splits, source_rows))))
    lines = ["source_row,given_label,given_class,predicted_label,predicted_class,p_label_wrong,"
             "model_p_given_label,verified,model_selected_by,dataset_row"]
    lines += [f"{s},{g},{g},{p},{p},{pw:.6f},{1 - pw:.6f},{v},validation,{d}" for s, d, g, p, pw, v in REPORT]
    (root / "reports").mkdir()
    (root / "reports/label_issues.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")


def _annotate(task: dict, ident: int, *annotations: tuple[str | None, bool, str]) -> dict:
    """The task as Label Studio exports it: an id, and one annotation per (class, was_cancelled, updated_at)."""
    out = {"id": ident, "data": task["data"], "predictions": task["predictions"], "annotations": []}
    for n, (choice, cancelled, when) in enumerate(annotations):
        result = [] if choice is None else [{"id": f"a{n}", "from_name": "label", "to_name": "image",
                                             "type": "choices", "origin": "manual", "value": {"choices": [choice]}}]
        out["annotations"].append({"id": 100 * ident + n, "result": result, "was_cancelled": cancelled,
                                   "ground_truth": False, "created_at": when, "updated_at": when, "task": ident})
    return out


def _reviewed(tasks: list[dict]) -> list[dict]:
    """Label Studio's JSON export after review: relabelled, confirmed (after a changed mind), cancelled, untouched."""
    return [
        _annotate(tasks[0], 1, ("7", False, "2024-05-01T10:00:00Z")),                   # 1 → 7
        _annotate(tasks[1], 2, ("8", False, "2024-05-01T10:00:00Z"),
                  ("3", False, "2024-05-02T09:00:00Z")),                                 # latest: keep 3
        _annotate(tasks[2], 3, ("2", True, "2024-05-01T11:00:00Z")),                    # skipped
        _annotate(tasks[3], 4),                                                          # not annotated
    ]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_tasks_follow_label_studio_format():
    images = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    rows = [{"source_row": "7", "file": "", "given_class": "1", "predicted_class": "7", "p_label_wrong": "0.95",
             "dataset_row": "3"},
            {"source_row": "2", "given_class": "3", "predicted_class": "8", "p_label_wrong": "0.9", "dataset_row": "1"}]
    tasks = export_tasks(rows, images, classes=CLASSES, model_version="m1")
    assert tasks[0]["data"]["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(tasks[0]["data"]["image"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert {k: tasks[1]["data"][k] for k in ("source_row", "file", "given_class", "dataset_row")} == \
        {"source_row": 2, "file": "", "given_class": "3", "dataset_row": 1}
    (prediction,) = tasks[0]["predictions"]
    assert prediction["model_version"] == "m1" and prediction["score"] == 0.95
    (result,) = prediction["result"]
    assert result["id"] and result["id"] != tasks[1]["predictions"][0]["result"][0]["id"]
    assert {k: result[k] for k in ("from_name", "to_name", "type", "value")} == \
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["7"]}}
    features = export_tasks(rows[:1], np.arange(20, dtype=np.float32)[None], classes=CLASSES, model_version="m")
    assert features[0]["data"]["text"].startswith("x0=0, x1=1") and "image" not in features[0]["data"]
    assert features[0]["predictions"][0]["result"][0]["to_name"] == "text"


def test_label_config_escapes_classes():
    xml = label_config(["cat", 'a<b & "c"'], kind="image")
    view = ET.fromstring(xml)
    assert view.find("Image").attrib == {"name": "image", "value": "$image", "zoom": "true"}
    assert "$given_class" in view.find("Header").attrib["value"]
    choices = view.find("Choices")
    assert (choices.attrib["name"], choices.attrib["toName"], choices.attrib["choice"]) == ("label", "image", "single")
    assert [c.attrib["value"] for c in choices] == ["cat", 'a<b & "c"']
    text = ET.fromstring(label_config(["x"], kind="text"))
    assert text.find("Text").attrib["value"] == "$text" and text.find("Choices").attrib["toName"] == "text"


def test_export_and_import_round_trip(tmp_path, monkeypatch, capsys):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    cli.main(["export", "--top", "4"])
    out = tmp_path / "review/label_studio"
    tasks = json.loads((out / "tasks.json").read_text())
    assert [t["data"]["source_row"] for t in tasks] == [7, 2, 5, 0]  # top 4, verified source row 9 never shown
    assert all(t["data"]["image"].startswith("data:image/png;base64,") for t in tasks)
    assert tasks[0]["predictions"][0]["model_version"] == "lnlflow digits, selected by validation"
    assert ET.fromstring((out / "label_config.xml").read_text()).find("Choices")[9].attrib["value"] == "9"
    assert "wrote 4 task(s)" in capsys.readouterr().out
    cli.main(["export", "--top", "2", "--out", "ls"])
    assert len(json.loads((tmp_path / "ls/tasks.json").read_text())) == 2

    before = (tmp_path / "params.yaml").read_text().splitlines()
    (tmp_path / "export.json").write_text(json.dumps(_reviewed(tasks)))
    cli.main(["import", "export.json"])
    printed = capsys.readouterr().out
    assert _read_csv(tmp_path / "corrections.csv") == [
        {"source_row": "7", "label": "7", "trusted": "1"}, {"source_row": "2", "label": "", "trusted": "1"}]
    assert "imported 2 reviewed label(s)" in printed and "1 label(s) changed, 1 kept; 2 verified; 2 task(s)" in printed
    after = (tmp_path / "params.yaml").read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert len(after) == len(before) and len(changed) == 1  # every other line, comments included, as it was
    (old, new), = changed
    assert new.startswith("  corrections: corrections.csv ") and new.split("#")[1] == old.split("#")[1]

    from components.config import load_params
    from components.data.rows import read_rows
    from components.review.corrections import read_corrections

    assert load_params(tmp_path / "params.yaml").data.corrections == "corrections.csv"
    fixes = read_corrections("corrections.csv", classes=CLASSES, table=read_rows(Path("data/prepared/rows.csv")))
    assert fixes.rows.tolist() == [3, 1] and fixes.labels.tolist() == [7, -1] and fixes.trusted.all()

    shown_corrected = {**tasks[0], "data": {**tasks[0]["data"], "given_class": "7"}}  # the re-run report's label
    second = [_annotate(shown_corrected, 1, ("7", False, "2024-06-01T00:00:00Z")),  # keeps the shown (corrected) 7
              _annotate(tasks[2], 3, ("6", False, "2024-06-01T00:00:00Z"))]        # 4 → 6
    (tmp_path / "export2.json").write_text(json.dumps(second))
    cli.main(["import", "export2.json"])
    assert _read_csv(tmp_path / "corrections.csv") == [
        {"source_row": "7", "label": "7", "trusted": "1"}, {"source_row": "2", "label": "", "trusted": "1"},
        {"source_row": "5", "label": "6", "trusted": "1"}]
    assert "data.corrections set" not in capsys.readouterr().out
    third = [_annotate(tasks[0], 1, ("1", False, "2024-06-02T00:00:00Z"))]  # shown the source's 1, kept it
    (tmp_path / "export3.json").write_text(json.dumps(third))
    cli.main(["import", "export3.json"])
    assert _read_csv(tmp_path / "corrections.csv")[0] == {"source_row": "7", "label": "", "trusted": "1"}


def test_import_into_named_file_and_errors_write_nothing(tmp_path, monkeypatch):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    cli.main(["export", "--top", "4"])
    tasks = json.loads((tmp_path / "review/label_studio/tasks.json").read_text())
    params_before = (tmp_path / "params.yaml").read_text()
    bad = _reviewed(tasks)
    bad[1]["annotations"][1]["result"][0]["value"]["choices"] = ["wolf"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(LnlError, match=r"bad.json: Label Studio export task 1 \(id 2\): chosen class 'wolf' is not"):
        cli.main(["import", "bad.json"])
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(LnlError, match="broken.json: not readable JSON"):
        cli.main(["import", "broken.json"])
    for argv, message in ((["export", "--top", "0"], "--top must be a whole number"),
                          (["export", "--top", "x"], "--top must be a whole number")):
        with pytest.raises(LnlError, match=message):
            cli.main(argv)
    assert not (tmp_path / "corrections.csv").exists() and (tmp_path / "params.yaml").read_text() == params_before

    (tmp_path / "mine.csv").write_text("source_row,label,trusted\n1,5,0\n7,4,0\n")
    (tmp_path / "export.json").write_text(json.dumps(_reviewed(tasks)))
    cli.main(["import", "export.json", "--corrections", "mine.csv"])
    assert _read_csv(tmp_path / "mine.csv") == [
        {"source_row": "1", "label": "5", "trusted": "0"}, {"source_row": "7", "label": "7", "trusted": "1"},
        {"source_row": "2", "label": "", "trusted": "1"}]
    assert "corrections: mine.csv" in (tmp_path / "params.yaml").read_text()


def test_missing_report_is_one_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LnlError, match=r"reports/label_issues.csv: not found; run `dvc repro` first"):
        cli.main(["export", "--top", "5"])
    assert not (tmp_path / "reports").exists()


def test_corrections_from_export_by_file_and_errors():
    task = {"id": 11, "data": {"source_row": 4, "file": "cats/a.png", "given_class": "cat"},
            "annotations": [{"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                         "value": {"choices": ["dog"]}}], "was_cancelled": False}]}
    assert corrections_from_export([task], classes=["cat", "dog"]) == [
        {"file": "cats/a.png", "label": "dog", "trusted": "1", "given_class": "cat"}]
    assert corrections_from_export([task], classes=["cat", "dog"], key="source_row")[0]["source_row"] == "4"
    with pytest.raises(LnlError, match=r"task 0 \(id 11\): its data has no source_row"):
        corrections_from_export([{**task, "data": {"given_class": "cat"}}], classes=["cat", "dog"])
    with pytest.raises(LnlError, match=r"task 1 \(id 12\): not a task of Label Studio's JSON export"):
        corrections_from_export([task, {"id": 12, "label": "dog"}], classes=["cat", "dog"])
    with pytest.raises(LnlError, match="not a Label Studio JSON export"):
        corrections_from_export({"tasks": []}, classes=["cat"])


def test_merge_replaces_in_place_and_refuses_mixed_keys():
    old = [{"source_row": "1", "label": "a", "trusted": ""}, {"source_row": "2", "label": "b", "trusted": "0"}]
    new = [{"source_row": "3", "label": "c", "trusted": "1"}, {"source_row": "1", "label": "d", "trusted": "1"}]
    assert merge_corrections(old, new) == [{"source_row": "1", "label": "d", "trusted": "1"}, old[1], new[0]]
    keep = [{"source_row": "2", "label": "", "trusted": "1", "given_class": "b"}]  # confirmed the corrected b
    assert merge_corrections(old, keep)[1] == {"source_row": "2", "label": "b", "trusted": "1"}
    keep[0]["given_class"] = "z"  # shown the source's label z, before the correction b: back to the source's
    assert merge_corrections(old, keep)[1] == {"source_row": "2", "label": "", "trusted": "1"}
    with pytest.raises(LnlError, match="existing corrections name samples by source_row, the imported ones by file"):
        merge_corrections(old, [{"file": "x.png", "label": "", "trusted": "1"}])
