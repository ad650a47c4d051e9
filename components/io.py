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
import pickle
import re
import shutil
import tempfile
import tokenize
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from components.errors import LnlError, first_line


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


def umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by the set-and-restore dance."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `path` in one rename, on error it is removed.
    A killed writer's leftovers are removed first. The file gets the umask's mode (mkstemp alone makes it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error  # numpy and torch write through handles
    finally:
        tmp_path.unlink(missing_ok=True)


def save_torch(payload: Any, path: str | Path) -> None:
    """`torch.save` atomically and byte-reproducibly. Through an open handle: given a path, torch names the
    archive's records after the file name, so the temporary name would make identical payloads differ (new DVC
    hashes, run-cache misses and duplicate registered models)."""
    import torch  # only the training stages pay for it

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = _WriteErrors(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError as error:  # torch's zip writer reports a failed write as "unexpected pos" and the like
            if writer.error is not None:
                raise writer.error from error  # the OS's reason (a full disk: ENOSPC), named by atomic_path
            raise


class _WriteErrors:
    """A file handle that remembers the OSError of a failed write: torch's zip writer turns it into a RuntimeError
    ("[enforce fail at inline_container.cc] unexpected pos", "PytorchStreamWriter failed writing file")."""

    def __init__(self, handle: Any):
        self.handle, self.error = handle, None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes `path` (replacing any old one).
    A killed writer's leftovers are removed first. The folder gets the umask's mode (mkdtemp alone makes it 0700)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~umask())
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error  # numpy and torch write through handles
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _probe(folder: Path) -> None:
    """Create and delete a file in `folder`: the one writability test that also holds for root (who ignores
    permission bits but not read-only mounts)."""
    fd, name = tempfile.mkstemp(prefix=".lnlflow-probe-", dir=folder)
    os.close(fd)
    os.unlink(name)


def check_writable(*, files: Iterable[str | Path] = (), folders: Iterable[str | Path] = ()) -> None:
    """Before any work: every output can be written where it goes (the nearest existing folder above it, and an
    existing output folder itself). One LnlError naming the path otherwise."""
    targets = [(Path(f), False) for f in files] + [(Path(d), True) for d in folders]
    for target, is_folder in targets:
        if not is_folder and target.is_dir():  # (a file where a folder goes is simply replaced)
            raise LnlError(f"{target}: a folder is where this stage writes a file; move it away")
        place = target.parent
        while not place.exists() and not place.is_symlink() and place != place.parent:
            place = place.parent
        if not place.is_dir():
            what = "a broken link" if place.is_symlink() and not place.exists() else "a file"
            raise LnlError(f"{place}: {what} is where the folder for {target} should be; move it away")
        for folder in [place, target] if is_folder and target.is_dir() else [place]:
            try:
                _probe(folder)
            except OSError as error:
                raise LnlError(f"{folder}: cannot write there ({error.strerror or first_line(error)}), "
                               f"needed for {target}") from None


def write_reason(error: BaseException) -> str:
    """Why a write failed, in a few words: the OS's reason, or torch's one-line gist (its "unexpected pos"
    RuntimeError is what a full disk looks like through torch's zip writer)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", first_line(error))
    return "No space left on device" if "unexpected pos" in text else text


def npz_reason(error: BaseException) -> str:
    """Why numpy could not read an .npz, without numpy's advice to unpickle the file."""
    text = str(error)
    if isinstance(error, (SyntaxError, tokenize.TokenError)):
        return "a member's .npy header is corrupt"
    if "Object arrays cannot be loaded" in text:
        return "it holds object arrays; lnlflow loads numeric and text arrays only, never pickled objects"
    if "pickled" in text or isinstance(error, pickle.UnpicklingError):
        return "not a zip archive of arrays"
    if isinstance(error, (zipfile.BadZipFile, EOFError)) or "zip" in text.lower() or "CRC" in text:
        return f"truncated or corrupt archive: {first_line(error)}"
    return first_line(error)


NPY_MAGIC = b"\x93NUMPY"


def npy_head_reason(head: bytes) -> str | None:
    """Why bytes meant to be a .npy array are not one, judged by how they start; None when they start like one."""
    if not head:
        return "empty, 0 bytes"
    if head.startswith(NPY_MAGIC):
        return None
    if NPY_MAGIC.startswith(head):
        return "truncated inside its header"
    if head[:1] == b"\x80" and head[1:2] and 2 <= head[1] <= 5:  # pickle protocols 2-5 open with PROTO n
        return "a Python pickle, which lnlflow never unpickles"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (an .npz?), not a single array"
    return "no .npy header, so not an array written by numpy.save"


def npy_reason(error: BaseException) -> str:
    """Why numpy could not read a file that starts with the .npy header, without its advice to unpickle it."""
    text = first_line(error)
    if isinstance(error, (SyntaxError, tokenize.TokenError)) or "parse header" in text or "Header" in text:
        return "corrupt .npy header"
    if "Object arrays cannot be loaded" in text or "pickled" in text or "Python objects" in text:
        return "it holds object arrays; lnlflow loads numeric and text arrays only, never pickled objects"
    if "EOF" in text or "Failed to read all data" in text or "greater than file size" in text:
        return f"truncated: {text}"
    return f"corrupt: {text}"


def load_npy(path: str | Path, *, where: str, mmap: bool = False) -> Any:
    """A .npy array (memory-mapped if `mmap`), never unpickling anything: a file that is not one is one LnlError
    `"{where}: not a valid .npy file ({reason})"`."""
    import numpy as np

    try:
        with open(path, "rb") as handle:
            reason = npy_head_reason(handle.read(len(NPY_MAGIC)))
        if reason is None:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except OSError as error:
        if error.errno is not None:
            raise LnlError(f"{where}: cannot read it ({error.strerror})") from None
        reason = npy_reason(error)
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError, pickle.UnpicklingError, TypeError) as error:
        reason = npy_reason(error)
    raise LnlError(f"{where}: not a valid .npy file ({reason})")


def _npz_member(archive: Any, key: str, where: str) -> Any:
    """Member `key` of an open NpzFile; numpy hands back the raw bytes of a member that is no .npy array."""
    import numpy as np

    value = archive[key]
    if isinstance(value, np.ndarray):
        return value
    reason = npy_head_reason(bytes(value[: len(NPY_MAGIC)])) or "not a .npy array"
    raise LnlError(f"{where}: not a valid .npz file (member {key}.npy: {reason})")


def read_npz_arrays(path: str | Path, keys: Sequence[str], *, optional: Sequence[str] = (),
                    where: str | None = None, lacking: str = "") -> dict[str, Any]:
    """The arrays `keys` (and those of `optional` present) of an .npz, never unpickling anything. A file that is
    not a valid .npz, or lacks one of `keys`, is one LnlError starting with `where` (default: the path);
    `lacking` is appended to the missing-arrays message."""
    import numpy as np

    where = where or str(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise LnlError(f"{where}: lacks array(s) {', '.join(missing)}{lacking}")
            return {k: _npz_member(archive, k, where) for k in (*keys, *(k for k in optional if k in archive.files))}
    except OSError as error:
        if error.errno is None:  # zip errors that are no OS error
            raise LnlError(f"{where}: not a valid .npz file ({npz_reason(error)})") from None
        raise LnlError(f"{where}: cannot read it ({error.strerror})") from None
    except (zipfile.BadZipFile, ValueError, EOFError, pickle.UnpicklingError, AttributeError, SyntaxError,
            tokenize.TokenError) as error:
        raise LnlError(f"{where}: not a valid .npz file ({npz_reason(error)})") from None


def torch_load_reason(error: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to load it unsafely."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            return f"it holds a pickled {found.group(1)} object, which lnlflow never unpickles"
        if "Unsupported operand" in text:
            return "not a file written by torch.save"
        return "it holds objects other than tensors and plain containers, which lnlflow never unpickles"
    if isinstance(error, (EOFError, zipfile.BadZipFile)) or "PytorchStreamReader" in text:
        return "truncated or corrupt archive"
    reason = first_line(error)
    return type(error).__name__ if "weights_only" in reason else reason


def load_torch(path: str | Path, what: str, *, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`; a file it refuses is one LnlError `"{what} ({reason})"`, never torch's
    multi-line message (which suggests loading the file unsafely). torch's own warnings are silenced."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, TypeError, KeyError, IndexError) as error:
        raise LnlError(f"{what} ({torch_load_reason(error)})") from None


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
    """Read a numeric TSV written by `write_tsv`, naming the file in the error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise LnlError(f"{path}: file not found (run the upstream stage first: dvc repro)")
    try:
        lines = path.read_text().strip().splitlines()
    except UnicodeDecodeError:
        raise LnlError(f"{path}: corrupt table (not text)") from None
    if len(lines) < 2:
        raise LnlError(f"{path}: corrupt table (no rows)")
    header = lines[0].split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        try:
            if len(cells) != len(header):
                raise ValueError(f"{len(cells)} cells, expected {len(header)}")
            rows.append(dict(zip(header, (float(v) for v in cells))))
        except ValueError as error:
            raise LnlError(f"{path}: corrupt table at line {number} ({error})") from None
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
