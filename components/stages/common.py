"""What every stage shares: the CLI wrapper that turns LnlError into one line, and array loading."""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from components import paths
from components.errors import LnlError, first_line
from components.io import read_npz_arrays

# The DVC stages: they write every output atomically, so an interrupted one has written nothing.
ATOMIC = ("inputs", "data", "noise", "stage1", "stage2", "evaluate", "compare", "compare_run")
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _distributed():
    """components.training.distributed if a training stage loaded it (the other stages never import torch)."""
    return sys.modules.get("components.training.distributed")


def _label(name: str) -> str:
    """`lnlflow <stage>`, naming the rank under torchrun (also for errors found before the process group exists)."""
    rank = _distributed().current().rank if _distributed() else 0
    if not rank and os.environ.get("RANK", "").isdigit():
        rank = int(os.environ["RANK"])
    return f"lnlflow {name}" + (f" (rank {rank})" if rank else "")


def run_stage(name: str, main: Callable[[], None]) -> int:
    """Run a stage's main; a user error prints one `error:` line and exits 2, never a traceback.

    A disk that fills up or turns read-only mid-run (after the up-front checks) is one line naming the file, exit 1.
    Under torchrun, ranks other than 0 name themselves, a lost peer (a failed or timed-out collective) is one
    line and exit 1, and the process group is left at the end whatever happened.
    """
    clean = False
    try:
        main()
        clean = True
    except LnlError as error:
        print(f"{_label(name)}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_label(name)}: interrupted" + ("; no outputs were written" if name in ATOMIC else ""), file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in FULL_OR_READ_ONLY or not error.filename:
            raise
        target = re.sub(r"(^|/)\.([^/]+)\.\w+\.tmp(?=/|$)", r"\1\2", str(error.filename))  # atomic writes' temp names
        print(f"{_label(name)}: error: {target}: {error.strerror}", file=sys.stderr)
        return 1
    except Exception as error:
        if not (_distributed() and _distributed().is_peer_failure(error)):
            raise
        detail = first_line(error)
        print(f"{_label(name)}: error: lost contact with the other training processes ({detail})", file=sys.stderr)
        return 1
    finally:
        if _distributed():
            _distributed().shutdown(clean=clean)
    return 0


def read_npz(path: Path, keys: tuple[str, ...], *, optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load the named arrays (and those of `optional` the file has), with one clear error if the file is
    missing, corrupt or lacks one of `keys`."""
    if not path.is_file():
        raise LnlError(f"{path}: file not found (run the upstream stage first: dvc repro)")
    return read_npz_arrays(path, keys, optional=optional, lacking=" (an outdated file? run dvc repro)")


def load_prepared() -> dict:
    """Prepared dataset: y (clean), split indices, and X as the on-disk store (components/data/store.py: index it,
    `take` rows or `load` it whole), checked against its recorded digests."""
    arrays = read_npz(paths.DATASET_NPZ, ("y", "train_idx", "val_idx", "test_idx"))
    return {**arrays, "X": open_checked_store()}


def open_checked_store():
    """The prepared store, its shards checked against store.json's sha256s first (components/integrity.py)."""
    from components.data.encoded import open_store
    from components.integrity import check_store

    store = open_store(paths.STORE)
    check_store(store)
    return store


def load_noisy() -> tuple[np.ndarray, np.ndarray]:
    """The labels the model is trained on (noisy on train, clean or noisy on val, clean on test; reviewed labels
    replace them where data.corrections says so) and the mask of rows whose label a person verified."""
    labels = read_npz(paths.NOISY_NPZ, ("y_noisy", "verified"))
    return labels["y_noisy"], labels["verified"]
