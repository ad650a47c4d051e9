"""data.corrections: reviewed labels replace training labels; verified rows; one error naming the CSV line."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.rows import RowTable
from components.errors import LnlError
from components.review.corrections import read_corrections

CLASSES = ("cat", "dog", "eel")


def _table(files: bool = False) -> RowTable:
    # rows 0-3 train, 4 val, 5-6 test; source rows as CIFAR numbers them (test rows restart at 0)
    return RowTable(split=np.array([0, 0, 0, 0, 1, 2, 2], dtype=np.int8),
                    source_row=np.array([0, 1, 2, 3, 4, 0, 1]),
                    file=tuple(f"img/{i}.png" for i in range(7)) if files else ("",) * 7)


def _read(tmp_path, text: str, *, files: bool = False):
    (tmp_path / "c.csv").write_text(text)
    return read_corrections(tmp_path / "c.csv", classes=CLASSES, table=_table(files))


def test_labels_replace_and_trusted_rows_are_verified(tmp_path):
    fixes = _read(tmp_path, "source_row,label,trusted\n2,eel,1\n0,,yes\n3,dog,\n4,cat,0\n")
    y = np.array([0, 1, 0, 0, 1, 2, 2])
    fixed, verified, changed = fixes.apply(y)
    assert fixed.tolist() == [0, 1, 2, 1, 0, 2, 2]  # source row 0 of the test batch (row 5) is untouched
    assert verified.tolist() == [True, False, True, False, False, False, False]
    assert changed.tolist() == [False, False, True, True, True, False, False]
    assert y.tolist() == [0, 1, 0, 0, 1, 2, 2]
    assert fixes.summary(changed) == {"rows": 4, "relabelled": 3, "labels_changed": 3, "verified": 2}


def test_rows_named_by_file(tmp_path):
    fixes = _read(tmp_path, "file,label\nimg/1.png,eel\n", files=True)
    assert fixes.rows.tolist() == [1] and fixes.labels.tolist() == [2] and not fixes.trusted.any()


@pytest.mark.parametrize("text, message", [
    ("source_row,label\n2,cat\n99,dog\n", r"line 3: source_row 99 is not a training or validation row of the source \(rows 0..4\)"),
    ("source_row,label\n2,wolf\n", r"line 2: label 'wolf' is not a class \(cat, dog, eel\)"),
    ("source_row,label\n1,cat\n1,dog\n", r"lines 2 and 3 both name source_row 1"),
    ("source_row,label,trusted\n1,cat,maybe\n", r"line 2: trusted must be 1/0/true/false/yes/no or empty, got 'maybe'"),
    ("source_row,label\nx,cat\n", r"line 2: source_row must be a whole number, got 'x'"),
    ("row,label\n1,cat\n", r"the header must be source_row,label\[,trusted\] or file,label\[,trusted\] \(got row,label\)"),
    ("source_row,file,label\n1,a,cat\n", "the header must be"),
    ("source_row,label,note\n1,cat,hi\n", r"unknown column\(s\) note"),
    ("file,label\nimg/1.png,cat\n", "names samples by file, but this data source has no files; use source_row"),
    ("source_row,label,trusted\n1,cat,1\n2,dog,1,checked by Ann\n",  # csv.DictReader drops the 4th cell silently
     r"line 3: 4 cells, but the header has 3 columns \(source_row,label,trusted\); remove the extra cell\(s\) or "
     r"quote a cell holding a comma$"),
])
def test_bad_corrections_name_the_line(tmp_path, text, message):
    with pytest.raises(LnlError, match=message):
        _read(tmp_path, text)


def test_test_rows_and_unknown_files_are_refused(tmp_path):
    table = RowTable(split=np.array([0, 2], dtype=np.int8), source_row=np.array([0, 7]), file=("a.png", "b.png"))
    (tmp_path / "c.csv").write_text("source_row,label\n7,cat\n")
    with pytest.raises(LnlError, match="line 2: source_row 7 is in the test split"):
        read_corrections(tmp_path / "c.csv", classes=CLASSES, table=table)
    (tmp_path / "c.csv").write_text("file,label\nb.png,cat\n")
    with pytest.raises(LnlError, match="line 2: file 'b.png' is in the test split"):
        read_corrections(tmp_path / "c.csv", classes=CLASSES, table=table)
    (tmp_path / "c.csv").write_text("file,label\nz.png,cat\n")
    with pytest.raises(LnlError, match="line 2: file 'z.png' is not a training or validation file under data.root"):
        read_corrections(tmp_path / "c.csv", classes=CLASSES, table=table)
    with pytest.raises(LnlError, match="data.corrections .*nope.csv: file not found"):
        read_corrections(tmp_path / "nope.csv", classes=CLASSES, table=table)
