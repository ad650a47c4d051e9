"""The label-issue report: every training label, most probably wrong first."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.io import write_text


def write_label_issues(
    path: Path,
    *,
    index: np.ndarray,
    given: np.ndarray,
    predicted: np.ndarray,
    p_label_wrong: np.ndarray,
    p_given_model: np.ndarray,
    classes: Sequence[str],
    known_noisy: np.ndarray | None = None,
    selected_by: str | None = None,
) -> None:
    """CSV sorted by p_label_wrong (descending); `known_noisy` (1/0, −1 = unknown, written empty) where there is
    ground truth; `selected_by` (the same on every row: validation | labelfree | last) names the rule that chose
    the model whose predictions fill the predicted_* and model_p_given_label columns."""
    order = np.lexsort((index, -p_label_wrong))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["index", "given_label", "given_class", "predicted_label", "predicted_class",
              "p_label_wrong", "model_p_given_label"]
    header += ["known_noisy"] if known_noisy is not None else []
    writer.writerow(header + (["model_selected_by"] if selected_by is not None else []))
    for i in order:
        row = [int(index[i]), int(given[i]), classes[given[i]], int(predicted[i]), classes[predicted[i]],
               f"{p_label_wrong[i]:.6f}", f"{p_given_model[i]:.6f}"]
        row += [int(known_noisy[i]) if known_noisy[i] >= 0 else ""] if known_noisy is not None else []
        writer.writerow(row + ([selected_by] if selected_by is not None else []))
    write_text(path, buffer.getvalue())
