"""Unpickle plain data files (dicts of bytes, lists and numpy arrays) without running arbitrary pickled code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray

from components.errors import LnlError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction names; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a data file") from None


def load_data_pickle(path: Path) -> Any:
    """Load a CIFAR-style pickle (Python 2 byte strings kept as bytes), refusing any non-array global."""
    try:
        with open(path, "rb") as handle:
            return _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise LnlError(f"{path}: not a valid data pickle ({error})") from None
