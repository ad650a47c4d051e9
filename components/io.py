"""Atomic file and folder writes, hashing, and JSON/TSV helpers.

Every stage writes its outputs through these, so a failed or killed stage leaves either the previous
complete outputs or nothing, never a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks (`algorithm`: any hashlib name, e.g. md5 for published sums)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.new(algorithm, usedforsecurity=False)).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digest(path)


def _remove_leftovers(path: Path) -> None:
    """Delete the temporary siblings a killed writer of `path` left (`kill -9`, a lost machine). One writer per
    path at a time is assumed (DVC's repository lock guarantees it for the stages)."""
    for stale in [*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.old-*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `path` in one rename, on error it is removed.
    A killed writer's leftovers are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_torch(payload: Any, path: str | Path) -> None:
    """`torch.save` atomically and byte-reproducibly. Through an open handle: given a path, torch names the
    archive's records after the file name, so the temporary name would make identical payloads differ (new DVC
    hashes, run-cache misses and duplicate registered models)."""
    import torch  # only the training stages pay for it

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes `path` (replacing any old one).
    A killed writer's leftovers are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays (and nested containers) to plain Python for JSON; NaN and ±inf become null."""
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write pretty JSON atomically."""
    write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, naming the file in the error if it is missing or corrupt."""
    from components.errors import LnlError

    path = Path(path)
    if not path.is_file():
        raise LnlError(f"{path}: file not found (run the upstream stage first: dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise LnlError(f"{path}: corrupt JSON ({error})") from None


def write_tsv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows (dicts with the same keys) as a TSV table with a header."""
    if not rows:
        raise ValueError("write_tsv needs at least one row")
    columns = list(rows[0])
    lines = ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join(_cell(row[c]) for c in columns))
    write_text(path, "\n".join(lines) + "\n")


def read_tsv(path: str | Path) -> list[dict[str, float]]:
    """Read a numeric TSV written by `write_tsv`."""
    lines = Path(path).read_text().strip().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, (float(v) for v in line.split("\t")))) for line in lines[1:]]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
