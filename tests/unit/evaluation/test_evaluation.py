"""Tests for components.evaluation (metrics, label-issue report, plots) and the atomic helpers in components.io."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from components.evaluation.metrics import (
    confusion_matrix,
    detection_metrics,
    per_class_accuracy,
    precision_recall,
    roc_auc,
)
from components.evaluation.plots import plot_confusion, plot_learning_curves, plot_score_histogram
from components.evaluation.report import write_label_issues
from components.io import atomic_dir, atomic_path, read_json, read_tsv, write_json, write_tsv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- metrics ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    is_pos = rng.random(300) < 0.3
    scores = rng.integers(0, 6, 300) / 5 + is_pos * 0.2  # few distinct values: many ties
    assert roc_auc(is_pos, scores) == pytest.approx(roc_auc_score(is_pos, scores), abs=1e-12)


def test_roc_auc_hand_computed():
    # pairs (pos, neg): (0.8>0.1) (0.8>0.5) (0.5=0.5 -> 1/2) (0.5>0.1) = 3.5 / 4
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.8, 0.5, 0.5, 0.1])) == pytest.approx(0.875)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0


@pytest.mark.parametrize("labels", [np.zeros(5, bool), np.ones(5, bool)])
def test_roc_auc_none_when_one_class_absent(labels):
    assert roc_auc(labels, np.linspace(0, 1, 5)) is None


def test_precision_recall_hand_computed():
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)
    flagged = np.array([1, 0, 1, 1, 0, 0, 0, 0], bool)
    precision, recall = precision_recall(truth, flagged)
    assert precision == pytest.approx(2 / 3)
    assert recall == pytest.approx(2 / 4)


def test_precision_recall_undefined():
    assert precision_recall(np.array([1, 0], bool), np.array([0, 0], bool)) == (None, 0.0)
    assert precision_recall(np.array([0, 0], bool), np.array([1, 0], bool)) == (0.0, None)


def test_detection_metrics():
    is_noisy = np.array([1, 1, 0, 0, 0], bool)
    p_wrong = np.array([0.9, 0.4, 0.6, 0.1, 0.2])
    out = detection_metrics(is_noisy, p_wrong, threshold=0.5)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(0.5)
    assert out["flagged_fraction"] == pytest.approx(0.4)
    assert out["auc"] == pytest.approx(roc_auc_score(is_noisy, p_wrong))


def test_confusion_matrix_hand_computed():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 3), expected)
    np.testing.assert_allclose(per_class_accuracy(y_true, y_pred, 3), [1 / 2, 2 / 3, 1 / 2])


def test_per_class_accuracy_absent_class_is_nan():
    acc = per_class_accuracy(np.array([0, 0, 2]), np.array([0, 1, 2]), 3)
    assert acc[0] == 0.5 and np.isnan(acc[1]) and acc[2] == 1.0


# --- label-issue report ------------------------------------------------------------------------------------


def _issues(tmp_path: Path, known_noisy=None, verified=(0, 0, 0, 0), file=None) -> list[dict[str, str]]:
    path = tmp_path / "reports" / "label_issues.csv"
    write_label_issues(
        path,
        source_row=np.array([110, 111, 112, 113]),
        file=file,
        dataset_row=np.array([10, 11, 12, 13]),
        given=np.array([0, 1, 2, 1]),
        predicted=np.array([1, 1, 0, 2]),
        p_label_wrong=np.array([0.2, 0.9, 0.5, 0.9]),
        p_given_model=np.array([0.3, 0.05, 0.4, 0.1]),
        classes=("cat", "dog", "eel"),
        verified=np.array(verified, dtype=bool),
        known_noisy=known_noisy,
    )
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_label_issues_sorted_descending(tmp_path):
    rows = _issues(tmp_path)
    assert [r["source_row"] for r in rows] == ["111", "113", "112", "110"]  # ties (0.9) by stored row
    assert [r["dataset_row"] for r in rows] == ["11", "13", "12", "10"]
    assert [float(r["p_label_wrong"]) for r in rows] == [0.9, 0.9, 0.5, 0.2]
    first = rows[0]
    assert first["given_label"] == "1" and first["given_class"] == "dog"
    assert first["predicted_label"] == "1" and first["predicted_class"] == "dog"
    assert float(first["model_p_given_label"]) == pytest.approx(0.05)
    assert rows[1]["predicted_class"] == "eel"
    assert "known_noisy" not in first and "file" not in first and first["verified"] == "0"


def test_label_issues_known_noisy_and_file_columns(tmp_path):
    rows = _issues(tmp_path, known_noisy=np.array([False, True, False, True]), file=["a.png", "b.png", "c.png", "d.png"])
    assert list(rows[0]) == ["source_row", "file", "given_label", "given_class", "predicted_label", "predicted_class",
                             "p_label_wrong", "model_p_given_label", "verified", "known_noisy", "dataset_row"]
    assert {r["source_row"]: (r["file"], r["known_noisy"]) for r in rows} == {
        "110": ("a.png", "0"), "111": ("b.png", "1"), "112": ("c.png", "0"), "113": ("d.png", "1")}


def test_verified_rows_come_last_whatever_their_score(tmp_path):
    rows = _issues(tmp_path, verified=(0, 1, 0, 0))
    assert [r["source_row"] for r in rows] == ["113", "112", "110", "111"]
    assert [r["verified"] for r in rows] == ["0", "0", "0", "1"]


# --- plots --------------------------------------------------------------------------------------------------


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000 and data[-8:-4] == b"IEND"


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 20, (4, 4))
    plot_confusion(cm, ["a", "b", "c", "d"], tmp_path / "cm.png", title="confusion")
    is_noisy = rng.random(200) < 0.3
    plot_score_histogram(rng.integers(0, 10, 200).astype(float), is_noisy, tmp_path / "wrong.png",
                         xlabel="wrong events", title="integral")
    plot_score_histogram(rng.random(200), is_noisy, tmp_path / "p.png", xlabel="p", title="continuous")
    rows = [{"epoch": e, "loss": 1 / e, "train_acc": 0.5, "val_acc": 0.6, "test_acc": 0.7} for e in (1, 2, 3)]
    plot_learning_curves(rows, rows[:2], tmp_path / "curves.png", method="ido")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cm.png", "curves.png", "p.png", "wrong.png"]  # no temp files left behind
    for name in names:
        assert _is_png(tmp_path / name), name


def test_confusion_plot_many_classes(tmp_path):
    plot_confusion(np.eye(25, dtype=int) * 3, [str(i) for i in range(25)], tmp_path / "big.png", title="25")
    assert _is_png(tmp_path / "big.png")


# --- components.io ------------------------------------------------------------------------------------------


def test_atomic_dir_success_replaces_old(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_dir(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
        assert (target / "stale.txt").exists()  # the old folder is intact until the body finishes
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or .old folder left


def test_atomic_dir_failure_keeps_old(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert (target / "keep.txt").read_text() == "old"
    assert not (target / "half.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_without_old_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "nested" / "out") as tmp:
            (tmp / "x").write_text("x")
            raise ValueError
    assert list((tmp_path / "nested").iterdir()) == []


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_write_json_numpy_types(tmp_path):
    path = tmp_path / "m" / "metrics.json"
    data = {
        "i": np.int64(3),
        "f": np.float32(0.5),
        "b": np.bool_(True),
        "arr": np.array([[1, 2], [3, 4]], dtype=np.int16),
        "nested": [{"x": np.float64(1.25)}, (np.int32(1), 2)],
        np.int64(7): "numpy key",
        "none": None,
    }
    write_json(path, data)
    loaded = json.loads(path.read_text())
    assert loaded == {"i": 3, "f": 0.5, "b": True, "arr": [[1, 2], [3, 4]], "nested": [{"x": 1.25}, [1, 2]],
                      "7": "numpy key", "none": None}
    assert type(loaded["i"]) is int and type(loaded["b"]) is bool
    assert read_json(path) == loaded


def test_read_json_errors(tmp_path):
    from components.errors import LnlError

    with pytest.raises(LnlError, match="not found"):
        read_json(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LnlError, match="corrupt JSON"):
        read_json(bad)


def test_tsv_round_trip(tmp_path):
    rows = [{"epoch": 1, "loss": 0.123456789, "acc": np.float64(0.5)}, {"epoch": 2, "loss": 0.1, "acc": 0.75}]
    write_tsv(tmp_path / "log.tsv", rows)
    assert (tmp_path / "log.tsv").read_text().splitlines()[0] == "epoch\tloss\tacc"
    back = read_tsv(tmp_path / "log.tsv")
    assert back[1] == {"epoch": 2.0, "loss": 0.1, "acc": 0.75}
    assert back[0]["loss"] == pytest.approx(0.123457, abs=1e-6)
    with pytest.raises(ValueError):
        write_tsv(tmp_path / "empty.tsv", [])


def test_atomic_dir_removes_a_killed_writers_leftovers(tmp_path):
    (tmp_path / ".out.abc123.tmp").mkdir()  # what `kill -9` inside `with atomic_dir(...)` leaves behind
    (tmp_path / ".out.old-4242").mkdir()
    (tmp_path / ".other.x.tmp").mkdir()  # another output's: not ours to remove
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x.tmp", "out"]


def test_saturated_scores_tie_and_the_model_breaks_the_tie(tmp_path):
    path = tmp_path / "issues.csv"
    write_label_issues(path, source_row=np.array([5, 6, 7]), file=None, dataset_row=np.array([0, 1, 2]),
                       given=np.array([0, 0, 0]), predicted=np.array([1, 1, 1]),
                       p_label_wrong=np.array([1.0, 0.99999996, 1.0]), p_given_model=np.array([0.3, 0.1, 0.2]),
                       classes=("a", "b"), verified=np.zeros(3, bool))
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["source_row"] for r in rows] == ["6", "7", "5"]  # all print 1.000000: least confident in its label first
