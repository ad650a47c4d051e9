"""`data/prepared/rows.csv`: where every stored row came from (source row, file) and which split it fell in.

The label-issue report, the review tools and `data.corrections` name samples as the user knows them: the row of
their npz/csv (or of `load_digits()`, or the CIFAR/MNIST training index) and, for file-based sources, the path
under `data.root`. This table maps those names to the stored rows exactly.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.errors import LnlError
from components.io import write_text

SPLITS = ("train", "val", "test")
HEADER = ["row", "split", "source_row", "file"]


@dataclass(frozen=True)
class RowTable:
    """Per stored row: split code (index into SPLITS), source row and file ("" for array sources)."""

    split: np.ndarray
    source_row: np.ndarray
    file: tuple[str, ...]

    @property
    def has_files(self) -> bool:
        return any(self.file)

    def split_of(self, rows: np.ndarray) -> list[str]:
        return [SPLITS[int(c)] for c in self.split[rows]]


def split_codes(n: int, split: dict[str, np.ndarray]) -> np.ndarray:
    """One split code per row from the data stage's index arrays."""
    codes = np.full(n, -1, dtype=np.int8)
    for code, name in enumerate(SPLITS):
        codes[split[name]] = code
    return codes


def write_rows(path: Path, *, split: np.ndarray, source_row: np.ndarray, file: tuple[str, ...] | None) -> None:
    """The table as CSV (atomically); `split` holds codes into SPLITS."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    files = file if file is not None else ("",) * len(split)
    for row, (code, origin, name) in enumerate(zip(split.tolist(), source_row.tolist(), files)):
        writer.writerow([row, SPLITS[code], origin, name])
    write_text(path, buffer.getvalue())


def read_rows(path: Path) -> RowTable:
    """The table written by the data stage; a missing or malformed file is one error naming it."""
    lookup = {name: code for code, name in enumerate(SPLITS)}
    split, source_row, files = [], [], []
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != HEADER:
                raise LnlError(f"{path}: not lnlflow's row table (header {header}); run `dvc repro` first")
            for number, (row, part, origin, name) in enumerate(reader):  # column by column: no list of rows
                if int(row) != number:
                    raise ValueError("rows out of order")
                split.append(lookup[part])
                source_row.append(int(origin))
                files.append(name or "")
    except OSError as error:
        raise LnlError(f"{path}: cannot read ({error.strerror or error}); run `dvc repro` first") from None
    except (KeyError, ValueError) as error:
        raise LnlError(f"{path}: malformed ({error}); run `dvc repro` first") from None
    return RowTable(np.array(split, dtype=np.int8), np.array(source_row, dtype=np.int64), tuple(files))
