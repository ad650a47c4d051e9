"""The pipeline's own outputs are checked against the sha256 recorded when they were written, before a stage uses them.

What is checked: the data store's shards (data/prepared/X/store.json records each shard's sha256) and the model
files (each `.pt` has a `.pt.sha256` sidecar in `sha256sum` format, written beside it by `save_model_checkpoint`).

What it costs: a model file is hashed in full at every load (megabytes: milliseconds). A shard is hashed in full
only when its (device, inode, size, mtime) differs from the one it had when its sha256 was last computed or
checked, remembered in `.lnlflow/verified.sqlite` (outside DVC's outputs, like the other `.lnlflow` state); any
write to a file moves its mtime, so truncation or overwritten bytes are hashed and caught, while an unchanged
store costs one `stat` per shard (benchmarks/integrity_cost.py). `lnlflow verify` hashes everything in full, on
demand: it also catches damage whose mtime was set back.

Repair: with DVC's `cache.type` hardlink (this project's .dvc/config), a damaged output is the same file (inode)
as its object in the DVC cache, so the cache holds the damage too and `dvc checkout` or a run-cache restore
brings it back. A mismatch therefore also removes that cache object (it no longer holds what its name says,
which is what DVC itself does with an object that fails its hash check), and the error names the command that
re-makes the file: `dvc repro -f -s <the stage that wrote it>`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from components import paths
from components.errors import LnlError
from components.io import sha256_file, write_text

SEEN = Path(".lnlflow/verified.sqlite")
SIDECAR = ".sha256"


def locate(path: Path) -> tuple[Path | None, str | None]:
    """(the project root, the DVC stage that writes `path`) from where `path` lies: data/prepared → data,
    outputs/stage1|stage2 → that stage, outputs/compare/<run> → compare/dvc.yaml:run@<run>; (None, None) elsewhere."""
    parts = Path(path).parts
    for i in range(len(parts) - 1):
        pair, root = parts[i:i + 2], Path(*parts[:i]) if i else Path()
        if pair == paths.PREPARED.parts:
            return root, "data"
        if pair in (paths.STAGE1.parts, paths.STAGE2.parts):
            return root, pair[1]
        if pair == paths.COMPARE.parts and len(parts) > i + 2:
            return root, f"compare/dvc.yaml:run@{parts[i + 2]}"
    return None, None


def repair_command(path: Path) -> str:
    stage = locate(path)[1]
    return f"dvc repro -f -s {stage}" if stage else "dvc repro -f"


@contextlib.contextmanager
def _seen(root: Path | None) -> Iterator[sqlite3.Connection | None]:
    """The table of files whose sha256 was computed at a given (device, inode, size, mtime); None outside a
    project or where it cannot be opened (a read-only project: every check then hashes in full)."""
    db = None
    if root is not None:
        try:
            (root / SEEN).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(root / SEEN, timeout=30)
            db.execute("CREATE TABLE IF NOT EXISTS seen (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, "
                        "sha256 TEXT, PRIMARY KEY (dev, ino))")
        except (OSError, sqlite3.Error):
            db = None
    try:
        yield db
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.commit()
    finally:
        if db is not None:
            db.close()


def _known(db: sqlite3.Connection | None, stat: os.stat_result) -> str | None:
    if db is None:
        return None
    with contextlib.suppress(sqlite3.Error):
        row = db.execute("SELECT sha256 FROM seen WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?",
                         (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)).fetchone()
        return row[0] if row else None
    return None


def _note(db: sqlite3.Connection | None, stat: os.stat_result, sha256: str) -> None:
    if db is not None:
        with contextlib.suppress(sqlite3.Error):
            db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?, ?)",
                       (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, sha256))


def remember(files: dict[Path, str]) -> None:
    """A writer's record: each of `files` (in one project) hashes to its sha256 as it is now (the writer just
    hashed it), so the next check of an unchanged file costs one stat."""
    if files:
        with _seen(locate(next(iter(files)))[0]) as db:
            for path, sha256 in files.items():
                _note(db, Path(path).stat(), sha256)


def _cache_dirs(root: Path) -> list[Path]:
    """The DVC cache folders of the project: .dvc/cache and any `dir` set under [cache] in .dvc/config(.local)."""
    dirs = [root / ".dvc" / "cache"]
    for name in ("config", "config.local"):
        section = None
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in (root / ".dvc" / name).read_text().splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]'\" ").lower()
                elif section == "cache" and "=" in line:
                    key, value = (part.strip().strip("'\"") for part in line.split("=", 1))
                    if key == "dir" and value:
                        dirs.append(root / ".dvc" / value)
    return dirs


def drop_cached_copy(path: Path) -> Path | None:
    """Remove the DVC cache object that is the same file (a hardlink) as the damaged `path`, if there is one."""
    root = locate(path)[0]
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    if root is None or stat.st_nlink < 2:
        return None
    for folder in _cache_dirs(root):
        for parent, _, names in os.walk(folder):
            for name in names:
                candidate = Path(parent) / name
                with contextlib.suppress(OSError):
                    other = candidate.stat()
                    if (other.st_dev, other.st_ino) == (stat.st_dev, stat.st_ino):
                        candidate.unlink()
                        return candidate
    return None


def damaged(path: Path, record: str, *, deleting: bool = False) -> LnlError:
    """The one-line error for a file whose bytes no longer hash to the recorded sha256, after removing the DVC
    cache object that shares its damage; `deleting`: the caller deletes the file so that `dvc repro` re-makes it."""
    dropped = drop_cached_copy(path)
    what = f"{path}: damaged after it was written (its sha256 differs from the one in {record})"
    if deleting:
        also = " and its copy in the DVC cache (the same file)" if dropped else ""
        return LnlError(f"{what}; deleted it{also}, so that this dvc repro runs {locate(path)[1]} again")
    cache = "; removed its copy in the DVC cache (the same file)" if dropped else ""
    return LnlError(f"{what}{cache}; repair: {repair_command(path)}")


def _differs(path: Path, sha256: str, *, full: bool, db: sqlite3.Connection | None) -> tuple[bool, int]:
    """(whether `path` no longer hashes to `sha256`, bytes hashed); the hashing is skipped when `db` saw the file
    as it is now with that sha256 (unless `full`)."""
    try:
        stat = Path(path).stat()
    except OSError as error:
        raise LnlError(f"{path}: cannot read it ({error.strerror}); repair: {repair_command(path)}") from None
    if not full and _known(db, stat) == sha256:
        return False, 0
    if sha256_file(path) != sha256:
        return True, stat.st_size
    _note(db, stat, sha256)
    return False, stat.st_size


def check_file(path: Path, sha256: str, *, record: str, full: bool = False,
               db: sqlite3.Connection | None = None) -> int:
    """Raise `damaged` unless `path` hashes to `sha256` (see `_differs`). Returns the bytes hashed."""
    differs, hashed = _differs(path, sha256, full=full, db=db)
    if differs:
        raise damaged(Path(path), record)
    return hashed


def check_store(store, *, full: bool = False) -> int:
    """Every shard of an ArrayStore against store.json's sha256s (an encoded store's files are the user's
    inputs, fingerprinted by the `inputs` stage). Returns the bytes hashed."""
    shards = store.meta.get("shards") if isinstance(getattr(store, "meta", None), dict) else None
    if not shards:
        return 0
    folder, hashed = Path(store.folder), 0
    with _seen(locate(folder / shards[0]["file"])[0]) as db:
        for shard in shards:
            hashed += check_file(folder / shard["file"], shard["sha256"], record=str(folder / "store.json"),
                                 full=full, db=db)
    return hashed


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def write_sidecar(path: Path) -> None:
    """Record a model file's sha256 beside it (`sha256sum -c` reads it too)."""
    write_text(sidecar(path), f"{sha256_file(path)}  {path.name}\n")


def _recorded(path: Path) -> str | None:
    """The sha256 a model file's sidecar records for it, or None (no sidecar, or not a sha256 line for it)."""
    try:
        recorded = sidecar(path).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return recorded[0] if len(recorded) == 2 and len(recorded[0]) == 64 and recorded[1] == path.name else None


def check_model(path: Path) -> int:
    """A model file against its sidecar's sha256 (hashed in full: model files are small). Returns bytes hashed."""
    path = Path(path)
    recorded = _recorded(path)
    if recorded is None:
        what = "is missing" if not sidecar(path).exists() else "is not a sha256 line for it"
        raise LnlError(f"{path}: no recorded sha256 to check it against ({sidecar(path).name} {what}); "
                       f"repair: {repair_command(path)}")
    return check_file(path, recorded, record=str(sidecar(path)), full=True)


def _outputs() -> Iterator[tuple[Path, str, str]]:
    """(file, recorded sha256, where it is recorded) of every output with a recorded digest in the project here."""
    from components.data.encoded import open_store

    with contextlib.suppress(LnlError):  # an unreadable store.json: the data stage remakes or reports it
        store = open_store(paths.STORE) if (paths.STORE / "store.json").is_file() else None
        for shard in store.meta.get("shards", []) if store is not None else []:
            yield paths.STORE / shard["file"], shard["sha256"], str(paths.STORE / "store.json")
    for model in sorted(Path("outputs").rglob("*.pt")) if Path("outputs").is_dir() else []:
        if (recorded := _recorded(model)) is not None:  # an output of older code has none: its reader says so
            yield model, recorded, str(sidecar(model))


def repair_damaged() -> list[str]:
    """Run first in every `dvc repro` (the always-changed `inputs` stage calls it): each damaged output (cheap
    checks) is deleted with its DVC cache object, so DVC re-runs the stage that writes it instead of restoring
    the damage from its cache. Returns one line per file deleted."""
    lines = []
    with _seen(Path()) as db:
        for path, sha256, record in list(_outputs()):
            if path.is_file() and _differs(path, sha256, full=False, db=db)[0]:
                lines.append(str(damaged(path, record, deleting=True)))
                path.unlink()
    return lines


def main(argv: list[str] | None = None) -> None:
    """`lnlflow verify`: hash the data store and every model file in full against their recorded sha256."""
    import argparse

    argparse.ArgumentParser(prog="lnlflow verify", description=main.__doc__).parse_args(argv)
    from components.data.encoded import open_store

    start, hashed, counts = time.perf_counter(), 0, []
    if (paths.STORE / "store.json").is_file():
        store = open_store(paths.STORE)
        hashed += check_store(store, full=True)
        counts.append(f"{len(store.meta.get('shards', []))} data store shard(s)")
    models = sorted(Path("outputs").rglob("*.pt")) if Path("outputs").is_dir() else []
    for model in models:
        hashed += check_model(model)
    counts.append(f"{len(models)} model file(s)")
    print(f"verify: {' and '.join(counts)} match their recorded sha256 ({hashed / 2**20:.1f} MiB hashed in "
          f"{time.perf_counter() - start:.1f} s)")
