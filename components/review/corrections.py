"""`data.corrections`: a reviewer's CSV that fixes training labels and marks labels a person verified.

Header `source_row,label[,trusted]` or `file,label[,trusted]`: `source_row` / `file` name a sample as the label-issue
report does (components/data/rows.py), `label` is a class name (empty = keep the label), `trusted` 1 = verified by a
person. A corrected label replaces the label the model trains on, whatever produced it (the source or the noise
stage); verified rows are never flagged again and join the trusted set (validation / meta data). Every problem is
one error naming the CSV line, raised before anything is written.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.data.rows import SPLITS, RowTable
from components.errors import LnlError
from components.io import write_text

KEYS = ("source_row", "file")
TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes"}, {"0", "false", "no", ""}
TEST = SPLITS.index("test")


@dataclass(frozen=True)
class Corrections:
    """Stored rows named by the file, the label each gets (-1 = keep) and whether a person verified it."""

    rows: np.ndarray
    labels: np.ndarray
    trusted: np.ndarray

    def apply(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(corrected labels, verified mask, changed mask) over all stored rows; `y` is left as it is."""
        fixed = y.copy()
        relabel = self.labels >= 0
        fixed[self.rows[relabel]] = self.labels[relabel]
        verified = np.zeros(y.size, dtype=bool)
        verified[self.rows[self.trusted]] = True
        return fixed, verified, fixed != y

    def summary(self, changed: np.ndarray) -> dict:
        return {"rows": int(self.rows.size), "relabelled": int((self.labels >= 0).sum()),
                "labels_changed": int(changed.sum()), "verified": int(self.trusted.sum())}


def _lookup(table: RowTable, key: str) -> tuple[dict, dict]:
    """key value → stored row among the non-test rows, and → a test row (for the error message)."""
    values = table.source_row.tolist() if key == "source_row" else list(table.file)
    usable, test = {}, {}
    for row, (value, split) in enumerate(zip(values, table.split.tolist())):
        (test if split == TEST else usable).setdefault(value, row)
    return usable, test


class RowChecker:
    """The checks of one corrections row, shared by the CSV reader and `lnlflow review serve`'s API: the sample
    (`key` = source_row or file) must be a training or validation row, the label a class, trusted a yes/no word."""

    def __init__(self, *, classes: tuple[str, ...] | list[str], table: RowTable, key: str, where: str) -> None:
        if key == "file" and not table.has_files:
            raise LnlError(f"{where}: names samples by file, but this data source has no files; use source_row")
        self.key, self.usable, self.test = key, *_lookup(table, key)
        self.lookup = {name: i for i, name in enumerate(classes)}

    def name(self, cells: dict, where: str) -> int | str:
        """The sample's name as the table holds it (source_row as an int); one error unless it is usable."""
        key, value = self.key, cells.get(self.key, "")
        if key == "source_row":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise LnlError(f"{where}: source_row must be a whole number, got {cells.get(key)!r}") from None
        if value in self.test and value not in self.usable:
            raise LnlError(f"{where}: {key} {value!r} is in the test split; corrections change training "
                           "labels, the test labels stay the ground truth")
        if value not in self.usable:
            what = (f"a training or validation row of the source (rows {min(self.usable)}..{max(self.usable)})"
                    if key == "source_row" else "a training or validation file under data.root")
            raise LnlError(f"{where}: {key} {value!r} is not {what}; see reports/label_issues.csv")
        return value

    def check(self, cells: dict, where: str) -> tuple[int | str, int, int, bool]:
        """(sample name, stored row, class index or -1 = keep, trusted) of one row of cells (stripped strings)."""
        value = self.name(cells, where)
        label = cells.get("label", "")
        if label and label not in self.lookup:
            shown = ", ".join(list(self.lookup)[:10]) + (", …" if len(self.lookup) > 10 else "")
            raise LnlError(f"{where}: label {label!r} is not a class ({shown})")
        word = cells.get("trusted", "").lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise LnlError(f"{where}: trusted must be 1/0/true/false/yes/no or empty, got {cells['trusted']!r}")
        return value, self.usable[value], self.lookup[label] if label else -1, word in TRUE_WORDS


def read_csv_rows(path: Path, where: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(CSV line, {column: cell})]) of a corrections CSV; a row with more cells than the header has
    columns is an error naming its line (csv.DictReader would drop the extra cells without a word)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        lines = []
        for row in reader:
            if None in row:  # DictReader's key for the cells beyond the header
                cells = len(columns) + len(row[None])
                raise LnlError(f"{where} line {reader.line_num}: {cells} cells, but the header has {len(columns)} "
                               f"columns ({','.join(columns)}); remove the extra cell(s) or quote a cell holding a comma")
            lines.append((reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items()}))
    return columns, lines


def read_corrections(path: str | Path, *, classes: tuple[str, ...] | list[str], table: RowTable) -> Corrections:
    """Parse and check the corrections CSV against the stored rows and the class list."""
    path = Path(path)
    where = f"data.corrections {path}"
    try:
        columns, lines = read_csv_rows(path, where)
    except FileNotFoundError:
        raise LnlError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LnlError(f"{where}: cannot read ({error})") from None
    keys = [k for k in KEYS if k in columns]
    if len(keys) != 1 or "label" not in columns:
        raise LnlError(f"{where}: the header must be source_row,label[,trusted] or file,label[,trusted] "
                       f"(got {','.join(columns) or 'nothing'})")
    unknown = set(columns) - {keys[0], "label", "trusted"}
    if unknown:
        raise LnlError(f"{where}: unknown column(s) {', '.join(sorted(unknown))} (columns: {keys[0]},label[,trusted])")
    key = keys[0]
    checker = RowChecker(classes=classes, table=table, key=key, where=where)
    rows, labels, trusted, first = [], [], [], {}
    for line, cells in lines:
        value, row, label, verified = checker.check(cells, f"{where} line {line}")
        if first.setdefault(value, line) != line:
            raise LnlError(f"{where} lines {first[value]} and {line} both name {key} {value!r} (one row per sample)")
        rows.append(row)
        labels.append(label)
        trusted.append(verified)
    return Corrections(np.array(rows, dtype=np.int64), np.array(labels, dtype=np.int64), np.array(trusted, dtype=bool))


def read_correction_rows(path: Path) -> list[dict]:
    """The rows of an existing corrections CSV as stripped strings (none when the file does not exist), for the
    tools that edit it; a header other than source_row|file,label[,trusted] is one error."""
    if not path.is_file():
        return []
    try:
        columns, lines = read_csv_rows(path, str(path))
        rows = [cells for _, cells in lines]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LnlError(f"{path}: cannot read ({error})") from None
    keys = [k for k in KEYS if k in columns]
    if len(keys) != 1 or "label" not in columns or set(columns) - {*keys, "label", "trusted"}:
        raise LnlError(f"{path}: the header must be source_row,label[,trusted] or file,label[,trusted] "
                       f"(got {','.join(columns) or 'nothing'})")
    return rows


def save_corrections(path: Path, rows: list[dict], key: str, *, params: Path | None = None,
                     name: str | None = None) -> bool:
    """Write `rows` ({key, "label", "trusted"}) as the corrections CSV `path`, atomically (a temporary file, then one
    rename). With `params`, also set its data.corrections to `name` (how params.yaml refers to the file) through the
    round-trip writer, which keeps every other byte; returns whether params.yaml changed."""
    from components.params_file import apply_overrides

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([key, "label", "trusted"])
    writer.writerows([row[key], row["label"], row["trusted"]] for row in rows)
    write_text(path, buffer.getvalue())
    return bool(params and apply_overrides(params, {"data.corrections": str(name or path)}))
