"""Shared reading of the web-noisy benchmarks' list files, and assembly of their official splits into a Dataset."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.data.dataset import Dataset
from components.data.encoded import EncodedImages
from components.data.images import check_files_exist, decode_images, encoded_images
from components.data.store import scratch_array
from components.errors import LnlError
from components.io import sha256_file

UNKNOWN, RIGHT, WRONG = -1, 0, 1  # noise_truth values


def required(path: Path, what: str) -> Path:
    """`path` if it is a file, else an error naming it and what it should hold."""
    if not path.is_file():
        raise LnlError(f"data.root: {path} not found ({what})")
    return path


def read_lines(path: Path, *, header: bool = False) -> list[str]:
    """Non-empty stripped lines (the first one dropped when the file has a header)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    return lines[1:] if header else lines


def read_key_labels(path: Path, *, sep: str | None = None, header: bool = False) -> dict[str, int]:
    """`key label` lines (or `key<sep>label`) → {key: int label}; a malformed line is named."""
    table: dict[str, int] = {}
    for number, line in enumerate(read_lines(path, header=header), start=2 if header else 1):
        parts = line.rsplit(sep, 1) if sep else line.rsplit(None, 1)
        try:
            table[parts[0].strip()] = int(parts[1])
        except (IndexError, ValueError):
            raise LnlError(f"{path}: line {number} is not '<file> <integer label>': {line!r}") from None
    return table


@dataclass(frozen=True)
class Part:
    """One official split: image files under `base`, their truth (or given) labels and given labels."""

    role: str  # train | val | test
    base: Path
    names: list[str]
    y: np.ndarray
    y_given: np.ndarray
    noise_truth: np.ndarray  # UNKNOWN / RIGHT / WRONG per image

    @classmethod
    def clean(cls, role: str, base: Path, names: list[str], labels: list[int]) -> Part:
        """A split whose labels are ground truth (validation and test sets)."""
        y = np.asarray(labels, dtype=np.int64)
        return cls(role, base, names, y, y, np.full(len(y), RIGHT, dtype=np.int8))


def assemble(name: str, cfg, classes: tuple[str, ...], parts: list[Part], lists: list[Path]) -> Dataset:
    """Decode every part (after checking all files exist) into one Dataset with the official split marked."""
    root = Path(cfg.root)
    for part in parts:
        if not part.names:
            raise LnlError(f"data.root: {name}'s {part.role} split is empty under {root}")
        bad = (part.y < 0) | (part.y >= len(classes)) | (part.y_given < 0) | (part.y_given >= len(classes))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise LnlError(f"data.root: {part.names[i]} has a label outside the {len(classes)} classes")
    for part in parts:
        check_files_exist(part.base, part.names, f"{name} {part.role}")
    size = cfg.image_size
    if cfg.keep_encoded:  # the files stay as they are; batches are decoded while training
        kept = [encoded_images(p.base, p.names, size, f"{name} {p.role}", mode="RGB") for p in parts]
        decoded = [(None, digests) for _, digests in kept]
        X = EncodedImages([path for images, _ in kept for path in images.paths], size=size, channels=3,
                          digest=hashlib.sha256("".join(i.digest for i, _ in kept).encode()).hexdigest())
    else:
        X = scratch_array((sum(len(p.names) for p in parts), 3, size, size), np.uint8)  # one array, no concatenation
        decoded, start = [], 0
        for p in parts:
            view = X[start:start + len(p.names)]
            decoded.append(decode_images(p.base, p.names, size, f"{name} {p.role}", mode="RGB", out=view))
            start += len(p.names)
    roles = np.concatenate([np.full(len(p.names), p.role) for p in parts])
    files = [(str(path.relative_to(root)) if path.is_relative_to(root) else str(path), sha256_file(path)) for path in lists]
    row_files: list[str] = []
    for part, (_, digests) in zip(parts, decoded):
        prefix = "" if part.base == root else (
            f"{part.base.relative_to(root)}/" if part.base.is_relative_to(root) else f"{part.base.parent.name}/{part.base.name}/"
        )
        row_files += [prefix + n for n in part.names]
        files += [(prefix + n, d) for n, d in zip(part.names, digests)]
    return Dataset(
        name, X, np.concatenate([p.y for p in parts]), classes, 255.0,
        trusted=(roles == "val") if any(p.role == "val" for p in parts) else None, test=roles == "test",
        y_given=np.concatenate([p.y_given for p in parts]), noise_truth=np.concatenate([p.noise_truth for p in parts]),
        root=str(root), files=tuple(files), row_files=tuple(row_files),
        source_rows=np.concatenate([np.arange(len(p.names)) for p in parts]),  # position in its split's list
    )
