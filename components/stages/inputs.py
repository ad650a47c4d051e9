"""DVC stage `inputs`: content fingerprints of the user's files that params.yaml names, one JSON per consuming stage.

DVC cannot template a params-named path into `deps` (a null path crashes it, a list cannot be interpolated), so this
always-run stage writes data/inputs/{data,noise,model}.json and the stages `data`, `noise` and `stage1` depend on
their file. Unchanged inputs give byte-identical files, so nothing downstream re-runs; an edited file re-runs exactly
the stages that read it. File digests are cached in .lnlflow/ by (path, size, mtime_ns, inode), the trust DVC's
own state database gives, so a no-op repro only stats the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import yaml

from components import paths
from components.config import Params, load_params
from components.errors import LnlError
from components.integrity import repair_damaged
from components.io import sha256_file, write_text
from components.stages.common import run_stage

# fingerprint file → (the stage that reads it, the params fields naming its files or folders)
GROUPS: dict[Path, tuple[str, tuple[str, ...]]] = {
    paths.DATA_INPUTS: ("data", ("data.path", "data.root", "data.labels_csv", "data.food101_root")),
    paths.NOISE_INPUTS: ("noise", ("noise.label_file", "data.corrections")),
    paths.MODEL_INPUTS: ("stage1", ("model.weights",)),
}


class DigestCache:
    """sha256 of files, remembered by (absolute path, size, mtime_ns, inode) in a small SQLite file."""

    def __init__(self, db: Path) -> None:
        self._known: dict[str, tuple] = {}
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(db)
        except sqlite3.DatabaseError:  # a corrupt cache is only a cache
            db.unlink(missing_ok=True)
            self._db = self._open(db)

    @staticmethod
    def _open(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(db, timeout=60)
        conn.execute("CREATE TABLE IF NOT EXISTS digests "
                     "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT)")
        return conn

    def preload(self, folder: str) -> None:
        """Read every cached digest under `folder` in one query (one per file costs more than the walk)."""
        prefix = folder.rstrip(os.sep) + os.sep
        rows = self._db.execute("SELECT path, size, mtime_ns, inode, sha256 FROM digests WHERE path >= ? AND path < ?",
                                (prefix, prefix[:-1] + chr(ord(os.sep) + 1)))
        self._known.update((path, tuple(rest)) for path, *rest in rows)

    def file(self, path: str, stat: os.stat_result) -> str:
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        row = self._known.get(path)
        if row is None:
            row = self._db.execute("SELECT size, mtime_ns, inode, sha256 FROM digests WHERE path = ?", (path,)).fetchone()
        if row is not None and tuple(row[:3]) == key:
            return row[3]
        digest = sha256_file(path)
        self._db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (path, *key, digest))
        return digest

    def close(self) -> None:
        self._db.commit()
        self._db.close()


def _walk(folder: str, prefix: str = "", seen: frozenset = frozenset()):
    """(relative posix path, absolute path, stat) of every file under `folder`, sorted, following links once."""
    here = os.stat(folder)
    seen = seen | {(here.st_dev, here.st_ino)}
    with os.scandir(folder) as entries:
        listing = sorted(entries, key=lambda e: e.name)
    for entry in listing:
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            inner = entry.stat()
            if (inner.st_dev, inner.st_ino) not in seen:  # a link back up would loop forever
                yield from _walk(entry.path, rel + "/", seen)
        elif entry.is_file():
            yield rel, entry.path, entry.stat()


def digest_entry(path: Path, cache: DigestCache) -> dict:
    """{sha256, size} of a file; {sha256, files, size} of a folder, over its sorted relative paths, sizes, digests."""
    where = os.path.abspath(path)
    if os.path.isfile(where):
        stat = os.stat(where)
        return {"sha256": cache.file(where, stat), "size": stat.st_size}
    cache.preload(where)
    total, count, folder = 0, 0, hashlib.sha256()
    for rel, full, stat in _walk(where):
        folder.update(f"{rel}\0{stat.st_size}\0{cache.file(full, stat)}\n".encode())
        total, count = total + stat.st_size, count + 1
    return {"sha256": folder.hexdigest(), "files": count, "size": total}


def _value(params: Params, field: str) -> str | None:
    section, name = field.split(".")
    return getattr(getattr(params, section), name)


def fingerprint(params: Params, fields: tuple[str, ...], root: Path, cache: DigestCache) -> str:
    """The fingerprint file's text for `fields`: stable bytes (sorted keys, no times) for unchanged inputs."""
    entries = {}
    for field in fields:
        value = _value(params, field)
        if not value:
            continue
        path = root / value
        if path.exists():
            try:
                entries[field] = {"path": value, **digest_entry(path, cache)}
            except OSError as error:
                raise LnlError(f"{field}: {value}: cannot read {error.filename}: {error.strerror}") from None
        elif field == "data.root" and params.data.download:
            entries[field] = {"path": value, "absent": "downloaded by the data stage"}
        else:
            raise LnlError(f"{field}: {value}: no such file or folder")
    return json.dumps(entries, indent=2, sort_keys=True) + "\n"


def current(root: Path, params: Params | None = None) -> dict[Path, str]:
    """Every fingerprint file's text for the workspace at `root` as it is now."""
    params = params if params is not None else load_params(root / "params.yaml")
    cache = DigestCache(root / paths.INPUT_DIGESTS)
    try:
        return {rel: fingerprint(params, fields, root, cache) for rel, (_, fields) in GROUPS.items()}
    finally:
        cache.close()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _locked_md5(root: Path) -> dict[str, dict[str, str | None]]:
    """stage → {dep path: md5} from dvc.lock (empty when there is none)."""
    lock = root / "dvc.lock"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    return {name: {d["path"]: d.get("md5") for d in entry.get("deps", [])} for name, entry in stages.items()}


def _recorded(root: Path, rel: Path, md5: str) -> dict | None:
    """The fingerprint file dvc.lock recorded: the workspace copy if it still matches, else DVC's cache copy."""
    for candidate in (root / rel, root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]):
        if candidate.is_file() and _md5(candidate.read_text()) == md5:
            return json.loads(candidate.read_text())
    return None


def stale_inputs(root: Path) -> list[str]:
    """Inputs named in params.yaml whose content differs from what the last `dvc repro` of their stage read.

    Compares the current fingerprints with the ones dvc.lock records for the consuming stages (a stage that never
    ran is not reported here). Raises LnlError if params.yaml is invalid.
    """
    root = Path(root)
    locked = _locked_md5(root)
    params = load_params(root / "params.yaml")
    cache = DigestCache(root / paths.INPUT_DIGESTS)
    stale: list[str] = []
    try:
        for rel, (stage, fields) in GROUPS.items():
            if stage not in locked:
                continue
            md5 = locked[stage].get(rel.as_posix())
            try:
                text = fingerprint(params, fields, root, cache)
            except LnlError as error:
                stale.append(str(error))
                continue
            if md5 is None:
                stale.append(f"stage {stage}: dvc.lock has no fingerprint of its input files (run dvc repro)")
            elif _md5(text) != md5:
                old, new = _recorded(root, rel, md5), json.loads(text)
                changed = list(new) if old is None else [f for f in fields if old.get(f) != new.get(f)]
                for field in changed:
                    value = _value(params, field)
                    what = f"{field} {value}" if value else f"{field} (now unset)"
                    stale.append(f"{what} changed since the last dvc repro (stage {stage} is stale)")
                if not changed:
                    stale.append(f"stage {stage}: its input files changed since the last dvc repro")
    finally:
        cache.close()
    return stale


def main() -> None:
    texts = current(Path("."))  # every input is checked before any file is written
    for rel, text in texts.items():
        if not rel.is_file() or rel.read_text() != text:
            write_text(rel, text)
    named = [f"{field} {entry['path']}" for text in texts.values() for field, entry in json.loads(text).items()]
    print("inputs: " + (", ".join(named) if named else "params.yaml names no input files"))
    for line in repair_damaged():  # this stage runs first in every dvc repro: DVC then re-makes what it deletes
        print(f"inputs: {line}")


if __name__ == "__main__":
    raise SystemExit(run_stage("inputs", main))
