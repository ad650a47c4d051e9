"""reports/label_issues.csv as `lnlflow review serve` pages through it: a few light columns in memory, the rest of
each row read from disk by its byte offset when a page asks for it.

A report costs 45 bytes a row in memory (offset, source and stored row, given label, verified flag, a sorted
lookup), so 100,000 rows hold 4.5 MB whatever its file and class names weigh; the file is rescanned only when it
changes (a new `dvc repro`).
"""

from __future__ import annotations

import csv
import os
from array import array
from pathlib import Path

import numpy as np

from components.errors import LnlError

LIGHT = ("source_row", "given_label", "verified", "dataset_row")
REQUIRED = (*LIGHT, "given_class", "predicted_class", "p_label_wrong", "model_p_given_label")


def _cells(record: bytes) -> list[str]:
    text = record.decode("utf-8").rstrip("\r\n")
    return text.split(",") if '"' not in text else next(csv.reader([text]))


class ReportIndex:
    """Rows of the report in its order (most probably wrong unverified first, verified last), read lazily."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple | None = None
        self.refresh()

    def __len__(self) -> int:
        return int(self.offsets.size) - 1

    def _stat(self) -> tuple:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise LnlError(f"{self.path}: not found; run `dvc repro` first") from None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def refresh(self) -> bool:
        """Rescan when the file changed since the last scan; True when it did."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._scan()
        self._stamp = stamp
        return True

    def _scan(self) -> None:
        offsets, light = array("q"), {name: array("q") for name in LIGHT}
        try:
            with open(self.path, "rb") as handle:
                header = handle.readline()
                self.columns = _cells(header)
                if missing := [c for c in REQUIRED if c not in self.columns]:
                    raise LnlError(f"{self.path}: lacks column(s) {', '.join(missing)}; run `dvc repro` with this "
                                   "lnlflow first")
                where = [self.columns.index(name) for name in LIGHT]
                position, pending, start = len(header), b"", len(header)
                for line in handle:
                    if not pending:
                        start = position
                    position += len(line)
                    pending += line
                    if pending.count(b'"') % 2:  # a quoted cell holds a line break: the record goes on
                        continue
                    if pending.strip():
                        cells = _cells(pending)
                        offsets.append(start)
                        for name, column in zip(LIGHT, where):
                            light[name].append(int(cells[column]))
                    pending = b""
                offsets.append(position)
        except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError) as error:
            raise LnlError(f"{self.path}: cannot read ({error}); run `dvc repro` first") from None
        self.offsets = np.frombuffer(offsets, dtype=np.int64)
        self.source_row = np.frombuffer(light["source_row"], dtype=np.int64)
        self.dataset_row = np.frombuffer(light["dataset_row"], dtype=np.int64)
        self.given = np.frombuffer(light["given_label"], dtype=np.int64).astype(np.int32)
        self.verified = np.frombuffer(light["verified"], dtype=np.int64).astype(bool)
        self._sorter = np.argsort(self.dataset_row, kind="stable")
        self._sorted = self.dataset_row[self._sorter]

    def positions_of(self, stored_rows: np.ndarray) -> np.ndarray:
        """The report position of each stored row (−1 where the report does not list it: validation rows)."""
        stored_rows = np.asarray(stored_rows, dtype=np.int64)
        if not len(self):
            return np.full(stored_rows.size, -1, dtype=np.int64)
        at = np.clip(np.searchsorted(self._sorted, stored_rows), 0, len(self) - 1)
        return np.where(self._sorted[at] == stored_rows, self._sorter[at], -1)

    def read(self, positions: np.ndarray) -> list[dict[str, str]]:
        """The full rows at these report positions, each as {column: cell}, read from disk by offset."""
        out = []
        with open(self.path, "rb") as handle:
            for position in np.asarray(positions, dtype=np.int64).tolist():
                handle.seek(int(self.offsets[position]))
                record = handle.read(int(self.offsets[position + 1] - self.offsets[position]))
                out.append(dict(zip(self.columns, _cells(record))))
        return out

    def nbytes(self) -> int:
        """Memory held per report (the light columns and the lookup)."""
        return sum(a.nbytes for a in (self.offsets, self.source_row, self.dataset_row, self.given, self.verified,
                                      self._sorter, self._sorted))
