"""Fetch an official archive: stream to a temporary file, verify its md5, extract safely, rename into place."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from components.errors import LnlError
from components.io import file_digest


def md5_file(path: Path) -> str:
    """Hex md5 of a file's bytes (the checksum the CIFAR pages publish)."""
    return file_digest(path, "md5")


def verify_md5(path: Path, expected: str) -> None:
    """Raise (naming the file and both sums) unless `path` has md5 `expected`."""
    actual = md5_file(path)
    if actual != expected:
        raise LnlError(f"{path.name}: checksum mismatch (md5 {actual}, expected {expected}); the download is corrupt or not the official file")


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise LnlError(f"archive member '{member.name}' would be written outside the target folder; refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise LnlError(f"archive member '{member.name}' is a link or special file; refusing to extract")


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar(.gz) into `target`, refusing absolute paths, '..', links and device files before writing anything."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as error:
        raise LnlError(f"{archive.name}: not a readable tar archive ({error})") from None


def download_and_extract(url: str, md5: str, root: Path, folder: str, *, timeout: float = 60.0) -> Path:
    """Make `root/folder` from the archive at `url`: nothing appears under `root` unless every step succeeds.

    The archive is streamed into a temporary folder inside `root`, its md5 checked, extracted there, and only
    then `folder` is renamed into place. Any failure removes the temporary folder, and `root` itself if this
    call created it. An existing `root/folder` is never replaced (it may hold the user's files).
    """
    if (root / folder).exists():
        raise LnlError(f"{root / folder} already exists; move it away to download afresh")
    first_new = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)  # the top folder made here
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    done = False
    try:
        archive = scratch / PurePosixPath(url).name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise LnlError(f"cannot download {url} ({error}); without network, place the extracted files under {root}") from None
        verify_md5(archive, md5)
        extracted = scratch / "extracted"
        safe_extract(archive, extracted)
        if not (extracted / folder).is_dir():
            raise LnlError(f"{archive.name} does not contain the folder '{folder}'")
        os.replace(extracted / folder, root / folder)
        done = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not done and first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
    return root / folder
