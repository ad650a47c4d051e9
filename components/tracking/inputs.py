"""Every file a run logs, read and checked before MLflow is touched: one LnlError naming the first bad one."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from components import paths
from components.errors import LnlError, first_line
from components.io import read_json, read_tsv
from components.tracking.registry import SELECTION_METRIC


@contextlib.contextmanager
def _relative(root: Path, rel: Path):
    """Name `rel`, not the absolute path, in an error raised inside."""
    try:
        yield
    except LnlError as error:
        raise LnlError(str(error).replace(str(root / rel), str(rel))) from None


def _json(root: Path, rel: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    with _relative(root, rel):
        data = read_json(root / rel)
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise LnlError(f"{rel}: corrupt or outdated file, no {', '.join(missing)} (run `dvc repro`)")
    return data


def _tsv(root: Path, rel: Path) -> list[dict[str, float]]:
    if not (root / rel).is_file():
        raise LnlError(f"{rel}: file not found (run `dvc repro`)")
    try:
        rows = read_tsv(root / rel)
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise LnlError(f"{rel}: corrupt training log ({first_line(error)})") from None
    if not rows or any("epoch" not in row or len(row) != len(rows[0]) for row in rows):
        raise LnlError(f"{rel}: corrupt training log (no epoch rows, or rows of different widths)")
    return rows


def _check_report(root: Path, rel: Path) -> None:
    import csv

    try:
        with open(root / rel, newline="") as handle:
            header = next(csv.reader(handle), [])
    except FileNotFoundError:
        raise LnlError(f"{rel}: file not found (run `dvc repro`)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LnlError(f"{rel}: unreadable report ({first_line(error)})") from None
    if "source_row" not in header or "p_label_wrong" not in header:
        raise LnlError(f"{rel}: corrupt report (header {','.join(header)[:80]!r} lacks source_row, p_label_wrong)")


def read_inputs(root: Path) -> dict[str, Any]:
    """Every file a run logs, read and checked before MLflow is touched: one LnlError naming the first bad one."""
    from components.models import load_model_checkpoint

    for rel in (Path("params.yaml"), paths.DATASET_NPZ):
        if not (root / rel).is_file():
            raise LnlError(f"{rel}: file not found (run `dvc repro`)")
    found = {
        "evaluation": _json(root, paths.EVAL_METRICS,
                            ("method", SELECTION_METRIC, "test_acc_selected", "per_class_acc")),
        "noise": _json(root, paths.NOISE_MANIFEST, ("kind", "convention", "realised_rate", "requested_rate")),
        "data": _json(root, paths.DATA_MANIFEST, ("name", "sha256", "split", "classes")),
        "curves": {"stage1": _tsv(root, paths.STAGE1_LOG), "stage2": _tsv(root, paths.STAGE2_LOG)},
        "plots": sorted((root / paths.PLOTS).glob("*.png")),
    }
    if not found["plots"]:
        raise LnlError(f"{paths.PLOTS}/: no plots found (run `dvc repro`)")
    _check_report(root, paths.LABEL_ISSUES)
    if not (root / paths.REVIEW_PAGE).is_file():
        raise LnlError(f"{paths.REVIEW_PAGE}: file not found (run `dvc repro`)")
    with _relative(root, paths.MODEL_SELECTED):  # a corrupt model fails here, not inside the run
        load_model_checkpoint(root / paths.MODEL_SELECTED, checked=True)
    return found
