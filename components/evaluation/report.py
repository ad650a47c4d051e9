"""The label-issue report: every training label, most probably wrong first, named as the user knows the sample."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.io import atomic_path


def issue_order(p_label_wrong: np.ndarray, verified: np.ndarray, p_given_model: np.ndarray,
                tiebreak: np.ndarray) -> np.ndarray:
    """Unverified rows by p_label_wrong descending as the report prints it (6 decimals: scores that saturate at
    1.000000 tie), ties by the model's probability of the given label ascending, then by `tiebreak`; the rows a
    person verified last."""
    return np.lexsort((tiebreak, p_given_model, -np.round(p_label_wrong, 6), verified.astype(np.int8)))


def write_label_issues(
    path: Path,
    *,
    source_row: np.ndarray,
    file: Sequence[str] | None,
    dataset_row: np.ndarray,
    given: np.ndarray,
    predicted: np.ndarray,
    p_label_wrong: np.ndarray,
    p_given_model: np.ndarray,
    classes: Sequence[str],
    verified: np.ndarray,
    known_noisy: np.ndarray | None = None,
    selected_by: str | None = None,
) -> np.ndarray:
    """CSV in `issue_order`; returns that order (positions into the arguments).

    `source_row` / `file` (file-based sources; omitted when None) name each sample in the user's source
    (components/data/rows.py); `dataset_row` is its row in data/prepared. `verified` (data.corrections trusted) rows
    come last and are never flagged again. `known_noisy` (1/0, −1 = unknown, written empty) where there is ground
    truth; `selected_by` (validation | labelfree | last) names the rule that chose the model whose predictions fill
    the predicted_* and model_p_given_label columns.
    """
    order = issue_order(p_label_wrong, verified, p_given_model, dataset_row)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:  # row by row: no copy of the whole text
        _write_rows(csv.writer(handle, lineterminator="\n"), order, source_row, file, dataset_row, given, predicted,
                    p_label_wrong, p_given_model, classes, verified, known_noisy, selected_by)
    return order


def _write_rows(writer, order, source_row, file, dataset_row, given, predicted, p_label_wrong, p_given_model,
                classes, verified, known_noisy, selected_by) -> None:
    header = ["source_row"] + (["file"] if file is not None else [])
    header += ["given_label", "given_class", "predicted_label", "predicted_class", "p_label_wrong",
               "model_p_given_label", "verified"]
    header += ["known_noisy"] if known_noisy is not None else []
    header += ["model_selected_by"] if selected_by is not None else []
    writer.writerow(header + ["dataset_row"])
    for i in order:
        row = [int(source_row[i])] + ([file[i]] if file is not None else [])
        row += [int(given[i]), classes[given[i]], int(predicted[i]), classes[predicted[i]],
                f"{p_label_wrong[i]:.6f}", f"{p_given_model[i]:.6f}", int(verified[i])]
        row += [int(known_noisy[i]) if known_noisy[i] >= 0 else ""] if known_noisy is not None else []
        row += [selected_by] if selected_by is not None else []
        writer.writerow(row + [int(dataset_row[i])])
