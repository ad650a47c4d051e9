"""What `lnlflow review serve` does behind its page and API: page through the label-issue report, record each
decision in the data.corrections CSV at once, undo.

Every decision is checked as the noise stage checks the CSV (corrections.RowChecker), then the whole file is
rewritten atomically (a temporary sibling, one rename) before the call returns, so a closed tab or a killed server
loses nothing; the first one names a new file in params.yaml through the round-trip writer, as `review import`
does. Undo restores the row as it was before this server's latest decision on it (removes it when there was none).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from components import paths
from components.config import load_params
from components.data.encoded import open_store
from components.data.rows import read_rows
from components.errors import LnlError
from components.io import read_json
from components.review.corrections import KEYS, TRUE_WORDS, RowChecker, read_correction_rows, save_corrections
from components.review.report_index import ReportIndex
from components.review.thumbnails import feature_text, png_bytes

DEFAULT_CORRECTIONS = "corrections.csv"
STATUSES = ("unreviewed", "verified", "all")
MAX_LIMIT = 500
TRUE_VALUES = {True: "1", False: "", 1: "1", 0: ""}


class ReviewSession:
    """The project in `root` under review: its report, its data store and its corrections file."""

    def __init__(self, root: Path = Path(".")) -> None:
        self.root = Path(root)
        self.lock = threading.RLock()
        params = load_params(self.root / "params.yaml")
        classes = read_json(self.root / paths.DATA_MANIFEST).get("classes")
        if not isinstance(classes, list) or not classes:
            raise LnlError(f"{paths.DATA_MANIFEST}: lacks the class list; run `dvc repro` first")
        self.classes = [str(c) for c in classes]
        self.table = read_rows(self.root / paths.ROWS_CSV)
        self.store = open_store(self.root / paths.STORE)
        self.report = ReportIndex(self.root / paths.LABEL_ISSUES)
        self._check_report()
        self.configured = params.data.corrections is not None
        self.name = str(params.data.corrections or DEFAULT_CORRECTIONS)  # as params.yaml names it
        self.target = self.root / self.name
        self.checkers: dict[str, RowChecker] = {}
        self.journal: list[tuple[str, dict | None]] = []  # (CSV key value, the row before the decision)
        self._stamp: tuple | None = None
        self._load_corrections()
        self.eval_path = self.root / paths.EVAL_METRICS

    # --- state on disk ---------------------------------------------------------------------------------------------

    def _check_report(self) -> None:
        r, n = self.report, len(self.table.split)
        if len(r) and (r.dataset_row.min() < 0 or r.dataset_row.max() >= n
                       or (self.table.source_row[r.dataset_row] != r.source_row).any()
                       or r.given.min() < 0 or r.given.max() >= len(self.classes)):
            raise LnlError(f"{paths.LABEL_ISSUES} does not match the data in {paths.PREPARED}; run `dvc repro` first")

    def checker(self, key: str) -> RowChecker:
        if key not in self.checkers:
            self.checkers[key] = RowChecker(classes=self.classes, table=self.table, key=key,
                                            where=f"data.corrections {self.name}")
        return self.checkers[key]

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.target)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _load_corrections(self) -> None:
        """(Re)read the corrections CSV, checking every row as the noise stage will."""
        rows = read_correction_rows(self.target)
        present = [k for k in KEYS if rows and k in rows[0]]
        self.key = present[0] if present else ("file" if self.table.has_files else "source_row")
        checker, decided = self.checker(self.key), {}
        for line, row in enumerate(rows, start=2):
            value, stored, _, _ = checker.check(row, f"data.corrections {self.name} line {line}")
            if stored in decided:
                raise LnlError(f"data.corrections {self.name} line {line}: names {self.key} {value!r} twice")
            decided[stored] = row
        self.rows, self.decided = rows, decided  # decided: stored row → its CSV row
        self._stamp = self._file_stamp()

    def sync(self) -> None:
        """Follow a new report (`dvc repro`) or a hand-edited corrections file."""
        if self.report.refresh():
            self._check_report()
        if self._file_stamp() != self._stamp:
            self._load_corrections()
            self.journal.clear()  # the file changed under us: its old rows are no longer ours to restore

    def _save(self) -> None:
        named = save_corrections(self.target, self.rows, self.key,
                                 params=None if self.configured else self.root / "params.yaml", name=self.name)
        self.configured = self.configured or named
        self._stamp = self._file_stamp()

    # --- reading ---------------------------------------------------------------------------------------------------

    def _verified_now(self) -> np.ndarray:
        trusted = [row for row, cells in self.decided.items() if cells.get("trusted", "").lower() in TRUE_WORDS]
        now = self.report.verified.copy()
        at = self.report.positions_of(np.array(trusted, dtype=np.int64))
        now[at[at >= 0]] = True
        return now

    def items(self, *, offset: int = 0, limit: int = 20, status: str = "unreviewed") -> dict:
        if status not in STATUSES:
            raise LnlError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise LnlError(f"offset must be 0 or more and limit 1..{MAX_LIMIT}, got offset {offset}, limit {limit}")
        with self.lock:
            self.sync()
            now = self._verified_now()
            chosen = (np.flatnonzero(~now) if status == "unreviewed" else np.flatnonzero(now) if status == "verified"
                      else np.arange(len(self.report)))
            page = chosen[offset:offset + limit]
            rows = self.report.read(page)
            return {"total": int(chosen.size), "offset": offset, "status": status,
                    "items": [self._item(row, bool(now[p]), int(p)) for p, row in zip(page.tolist(), rows)]}

    def _item(self, row: dict, verified: bool, position: int) -> dict:
        stored = int(row["dataset_row"])
        key = row.get("file") if self.key == "file" else int(row["source_row"])
        decision = self.decided.get(stored)
        item = {"source_row": int(row["source_row"]), "file": row.get("file") or None, "given": row["given_class"],
                "predicted": row["predicted_class"], "p": float(row["p_label_wrong"]), "verified": verified,
                "key": key, "rank": position + 1, "p_given": float(row["model_p_given_label"]),
                "label": None if decision is None else (decision.get("label") or row["given_class"]),
                "changed": bool(decision and decision.get("label") and decision["label"] != row["given_class"])}
        if self.store.ndim == 4:
            item["sample"] = f"api/samples/{stored}.png"
        else:
            item["features"] = feature_text(self.store.take(np.array([stored]))[0])
        return item

    def progress(self) -> dict:
        """reviewed of K: the report's unverified rows verified since; changed: those given another class."""
        with self.lock:
            self.sync()
            r = self.report
            stored = np.array(list(self.decided), dtype=np.int64)
            at = r.positions_of(stored)
            reviewed = changed = 0
            for row, p in zip(stored.tolist(), at.tolist()):
                cells = self.decided[row]
                if p < 0 or r.verified[p] or cells.get("trusted", "").lower() not in TRUE_WORDS:
                    continue
                reviewed += 1
                changed += bool(cells.get("label")) and cells["label"] != self.classes[r.given[p]]
            unverified = int((~r.verified).sum())
            return {"reviewed": reviewed, "of": unverified, "changed": changed, "unreviewed": unverified - reviewed,
                    "verified": len(r) - unverified + reviewed, "corrections": self.name,
                    "undo": self.journal[-1][0] if self.journal else None}

    def sample_png(self, stored: int, *, min_side: int = 160) -> bytes:
        with self.lock:
            if self.store.ndim != 4 or self.report.positions_of(np.array([stored]))[0] < 0:
                raise KeyError(stored)
            return png_bytes(self.store.take(np.array([stored], dtype=np.int64))[0], min_side=min_side)

    def health(self) -> dict | None:
        """The label_health block of metrics/eval.json, when evaluate wrote one."""
        try:
            block = read_json(self.eval_path).get("label_health")
        except (LnlError, OSError, ValueError, AttributeError):
            return None
        return block if isinstance(block, dict) else None

    # --- writing ---------------------------------------------------------------------------------------------------

    def _named(self, body: dict, where: str) -> tuple[int, str | int]:
        """The stored row a request names (by source_row or file) and its name in the CSV's key."""
        given = [k for k in KEYS if body.get(k) is not None]
        if len(given) != 1:
            raise LnlError(f"{where}: name the sample by exactly one of source_row or file")
        stored = self.checker(given[0]).usable[self.checker(given[0]).name({given[0]: body[given[0]]}, where)]
        return stored, (self.table.file[stored] if self.key == "file" else int(self.table.source_row[stored]))

    def _given(self, stored: int) -> str | None:
        at = int(self.report.positions_of(np.array([stored]))[0])
        return None if at < 0 else self.classes[self.report.given[at]]

    def decide(self, body: dict, where: str = "POST /api/corrections") -> dict:
        """Record one decision {source_row | file, label ("" or null: the given label is right), trusted}."""
        if unknown := sorted(set(body) - {*KEYS, "label", "trusted"}):
            raise LnlError(f"{where}: unknown field(s) {', '.join(unknown)} (fields: source_row or file, label, trusted)")
        label, trusted = body.get("label"), body.get("trusted", True)
        if not isinstance(label, (str, type(None))) or not (isinstance(trusted, (bool, str)) or trusted in (0, 1)):
            raise LnlError(f"{where}: label must be a class name (or empty), trusted true or false")
        with self.lock:
            self.sync()
            stored, name = self._named(body, where)
            cells = {"label": (label or "").strip(), "trusted": TRUE_VALUES.get(trusted, str(trusted)).strip()}
            self.checker(self.key).check({self.key: str(name), **cells}, where)
            previous, given = self.decided.get(stored), self._given(stored)
            earlier = (previous or {}).get("label", "")
            if cells["label"] in ("", given):  # the given label is right: keep it, pinned if the CSV had relabelled it
                cells["label"] = (given or earlier) if earlier else ""
            row = {self.key: str(name), "label": cells["label"],
                   "trusted": "1" if cells["trusted"].lower() in TRUE_WORDS else ""}
            self._put(stored, row)
            self.journal.append((str(name), previous))
            return {"item": self._item_of(stored), "progress": self.progress()}

    def undo(self, name: str, where: str = "DELETE /api/corrections") -> dict:
        """Put back the row as it was before this server's latest decision on `name` (the CSV's key value)."""
        with self.lock:
            self.sync()
            stored, key = self._named({self.key: name}, f"{where}/{name}")
            entries = [i for i, (k, _) in enumerate(self.journal) if k == str(key)]
            if entries:
                _, previous = self.journal.pop(entries[-1])
            elif stored in self.decided:
                previous = None
            else:
                raise LnlError(f"{where}/{name}: no decision on {self.key} {key!r} to undo")
            self._put(stored, previous)
            return {"item": self._item_of(stored), "progress": self.progress()}

    def _put(self, stored: int, row: dict | None) -> None:
        """Set (or, with None, remove) the CSV row of a stored row and rewrite the file; memory follows the disk."""
        old_rows, old_decided = list(self.rows), dict(self.decided)
        current = self.decided.get(stored)
        if current is not None:
            at = next(i for i, r in enumerate(self.rows) if r is current)
            self.rows[at:at + 1] = [row] if row else []
        elif row is not None:
            self.rows.append(row)
        if row is None:
            self.decided.pop(stored, None)
        else:
            self.decided[stored] = row
        try:
            self._save()
        except BaseException:
            self.rows, self.decided = old_rows, old_decided
            raise

    def _item_of(self, stored: int) -> dict | None:
        at = int(self.report.positions_of(np.array([stored]))[0])
        if at < 0:
            return None
        now = self._verified_now()
        return self._item(self.report.read(np.array([at]))[0], bool(now[at]), at)
