"""Resume checkpoints: a killed stage continues from its last completed epoch instead of starting over.

One file per stage, `.lnlflow/checkpoints/<name>/checkpoint.pt` under the project root: outside DVC's outputs,
which DVC deletes before it runs a stage. It holds, after epoch e: the loop's model, optimiser, scheduler,
batch-order generator and rows; the stage's own state (`parts`: augmenter, per-sample statistics, selectors,
the stage-two method); and the global torch/numpy/python RNGs. It is keyed by a digest of everything that
determines the run (the params sections the stage reads, its input files, the code); a checkpoint with another
key is discarded with one line, never resumed. Writes are atomic (temporary file + rename, components/io.py) and
replace the previous checkpoint; the stage deletes it once its outputs exist. Resuming on the CPU reproduces an
uninterrupted run bit for bit (timing columns aside).

The state itself, generically: `capture(value)` turns live training objects into plain data that `torch.save`
writes and `torch.load(..., weights_only=True)` reads back: tensors (detached, on their device), numpy arrays and
scalars (as tagged tensors), torch and numpy generators (their states), anything with
`state_dict`/`load_state_dict` (modules, optimisers, schedulers, stage-two methods) through those, lists/tuples/
dicts element-wise, and lnlflow's own objects (classes defined under `components.` or in a stage run as
`__main__`) attribute by attribute. Configuration (pydantic models), devices, dtypes and plain functions are
constants and are skipped; anything else is a TypeError, so no state is lost silently. `restore(current, saved)`
puts a captured state back into the freshly built `current`: generators, modules, optimisers, dicts, lists and
lnlflow objects in place (so every reference to them stays valid); tensors and arrays are replaced by the saved
values (tensors moved to the current one's device).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor

from components.errors import LnlError
from components.io import load_torch, save_torch, sha256_file, to_jsonable, write_reason

CHECKPOINTS = Path(".lnlflow/checkpoints")
FORMAT = 1
# Tests only: seconds to sleep after each checkpoint write, so a test can kill a stage mid-training reliably.
DELAY_ENV = "LNLFLOW_TEST_EPOCH_DELAY"
# Settings that change neither the results nor the state: not part of the key.
NOT_IN_KEY = {"runtime": ("checkpoint_every",)}
CODE = Path(__file__).resolve().parents[1]  # the `components` package

# The training state a checkpoint holds: captured as plain data, restored in place (tags of captured values).
_ARRAY = "__ndarray__"
_GENERATOR = "__torch_generator__"
_NP_GENERATOR = "__numpy_generator__"
_CONSTANT_TYPES = (BaseModel, torch.device, torch.dtype, types.FunctionType, types.BuiltinFunctionType, type)


def _ours(value: Any) -> bool:
    """An instance of a class defined in this project (its attributes are captured one by one); a stage run
    with `python -m` defines its classes in `__main__`."""
    module = type(value).__module__
    return (module.startswith("components.") or module == "__main__") and hasattr(value, "__dict__")


def _stateful(value: Any) -> bool:
    return callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))


def is_constant(value: Any) -> bool:
    """Configuration, devices, dtypes, functions: fixed by the setup, never part of a checkpoint."""
    if isinstance(value, types.MethodType):
        return not _ours(value.__self__)
    return isinstance(value, _CONSTANT_TYPES)


def capture(value: Any) -> Any:
    """Plain, `weights_only`-loadable data for `value` (see the module docstring)."""
    if is_constant(value):
        return None
    if isinstance(value, torch.Generator):
        return {_GENERATOR: value.get_state()}
    if isinstance(value, np.random.Generator):
        return {_NP_GENERATOR: capture(value.bit_generator.state)}
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (np.ndarray, np.generic)):
        return {_ARRAY: torch.from_numpy(np.array(value))}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _stateful(value):
        return value.state_dict()
    if isinstance(value, dict):
        return {key: capture(item) for key, item in value.items() if not is_constant(item)}
    if isinstance(value, (list, tuple)):
        return type(value)(capture(item) for item in value)
    if isinstance(value, types.MethodType) and _ours(value.__self__):
        return capture(value.__self__)  # e.g. an augmenter's bound `strong`: its generator is state
    if _ours(value):
        return capture_attributes(value)
    raise TypeError(f"cannot checkpoint a {type(value).__module__}.{type(value).__name__}")


def capture_attributes(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """`capture` of every non-constant attribute of `obj` except those named in `skip`."""
    return {name: capture(value) for name, value in vars(obj).items() if name not in skip and not is_constant(value)}


def materialise(saved: Any) -> Any:
    """A captured value rebuilt without a live object to restore into (arrays and containers)."""
    if isinstance(saved, dict):
        if set(saved) == {_ARRAY}:
            array = saved[_ARRAY].cpu().numpy().copy()
            return array[()] if array.ndim == 0 else array
        return {key: materialise(item) for key, item in saved.items()}
    if isinstance(saved, (list, tuple)):
        return type(saved)(materialise(item) for item in saved)
    return saved


@torch.no_grad()
def restore(current: Any, saved: Any) -> Any:
    """Put `saved` (from `capture`) back into `current`; returns the restored value (see the module docstring)."""
    if is_constant(current):
        return current
    if isinstance(current, torch.Generator):
        current.set_state(saved[_GENERATOR])
        return current
    if isinstance(current, np.random.Generator):
        current.bit_generator.state = materialise(saved[_NP_GENERATOR])
        return current
    if isinstance(current, torch.nn.Parameter) and isinstance(saved, Tensor):
        current.copy_(saved)  # a parameter is shared with its module and optimiser: never replaced
        return current
    if isinstance(current, Tensor) and isinstance(saved, Tensor):
        return saved.to(current.device)
    if _stateful(current) and saved is not None:
        current.load_state_dict(saved)
        return current
    if isinstance(current, dict) and isinstance(saved, dict) and set(saved) != {_ARRAY}:
        for key, item in saved.items():
            current[key] = restore(current.get(key), item)
        return current
    if isinstance(current, list) and isinstance(saved, list):
        same = len(current) == len(saved)
        current[:] = [restore(c, s) for c, s in zip(current, saved)] if same else materialise(saved)
        return current
    if isinstance(current, tuple) and isinstance(saved, tuple) and len(current) == len(saved):
        return tuple(restore(c, s) for c, s in zip(current, saved))
    if isinstance(current, types.MethodType) and _ours(current.__self__):
        restore(current.__self__, saved)
        return current
    if _ours(current) and isinstance(saved, dict):
        restore_attributes(current, saved)
        return current
    return materialise(saved)


def restore_attributes(obj: Any, saved: dict[str, Any]) -> None:
    """`restore` each captured attribute of `obj` and set it."""
    for name, value in saved.items():
        setattr(obj, name, restore(getattr(obj, name, None), value))


# The checkpoint: its key, the global RNGs, the file.


def code_digest() -> str:
    """sha256 over the package's Python sources (a checkpoint never outlives a code change)."""
    digest = hashlib.sha256()
    for file in sorted(CODE.rglob("*.py")):
        digest.update(f"{file.relative_to(CODE)}\0".encode() + file.read_bytes())
    return digest.hexdigest()


def _input_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [path]


def run_key(sections: Mapping[str, Any], inputs: Iterable[Path]) -> str:
    """Digest of the params values a stage reads, its input files (name + content) and the code."""
    digest = hashlib.sha256(json.dumps(to_jsonable(sections), sort_keys=True).encode())
    for path in inputs:
        for file in _input_files(Path(path)):
            digest.update(f"{file}\0{sha256_file(file)}\0".encode())
    digest.update(code_digest().encode())
    return digest.hexdigest()


def section_values(params: BaseModel, dotted: str) -> Any:
    """The values of params section `dotted` (e.g. 'stage1', 'noise.kind'), minus `NOT_IN_KEY` settings."""
    value: Any = params
    for part in dotted.split("."):
        value = getattr(value, part)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
        for name in NOT_IN_KEY.get(dotted, ()):
            value.pop(name, None)
    return value


def rng_state() -> dict[str, Any]:
    """The global RNGs: torch (and CUDA once initialised), numpy's legacy one, Python's `random`."""
    state = {"torch": torch.get_rng_state(), "numpy": capture(np.random.get_state()), "python": random.getstate()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(materialise(state["numpy"]))
    random.setstate(materialise(state["python"]))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """The one place a checkpoint is written (atomically: a kill leaves the previous one or this one)."""
    save_torch(dict(payload), path)


class ResumeCheckpoint:
    """One stage's resume checkpoint, handed to `train_epochs(..., checkpointer=...)`.

    `parts` maps names to the stage's live stateful objects (restored in place on resume); `every` is
    runtime.checkpoint_every (0 = never write, never resume). A write that fails (disk full) is one warning;
    training goes on without further checkpoints, and a checkpoint written before stays valid.
    """

    def __init__(self, name: str, key: str, *, every: int, parts: Mapping[str, Any] | None = None,
                 root: Path = CHECKPOINTS, label: str | None = None):
        self.path = Path(root) / name / "checkpoint.pt"
        self.key, self.every, self.parts, self.label = key, every, dict(parts or {}), label or name
        self.failed = False  # a write failed: no more writes this run (one warning, not one per epoch)

    def _say(self, message: str) -> None:
        print(f"{self.label}: {message}", flush=True)

    def resume(self, loop_parts: dict[str, Any], epochs: int) -> int:
        """Restore the loop's and the stage's state from a matching checkpoint; returns its epoch (0: none)."""
        if not self.path.is_file():
            return 0
        if not self.every:
            self.discard()
            return 0
        try:  # corrupt, truncated, or saved on a device this machine lacks
            payload = load_torch(self.path, f"discarding an unreadable checkpoint {self.path}", map_location=None)
        except LnlError as error:
            self._say(str(error))
            self.discard()
            return 0
        if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("key") != self.key:
            self._say(f"discarding the checkpoint of a different configuration, input or code ({self.path})")
            self.discard()
            return 0
        try:
            restore(loop_parts, payload["loop"])
            restore(self.parts, payload["parts"])
            set_rng_state(payload["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise LnlError(f"{self.path}: cannot restore this checkpoint ({error}); delete it to start over") from None
        epoch = int(payload["epoch"])
        self._say(f"resuming from epoch {epoch}/{epochs} checkpoint")
        return epoch

    def save(self, epoch: int, epochs: int, loop_parts: Mapping[str, Any]) -> None:
        """After epoch `epoch`, when it falls on the `every` cadence: replace the checkpoint."""
        if not self.every or epoch % self.every:
            return
        if self.failed:
            return
        payload = {"format": FORMAT, "key": self.key, "epoch": epoch, "epochs": epochs,
                   "loop": capture(dict(loop_parts)), "parts": capture(self.parts), "rng": rng_state()}
        try:
            write_checkpoint(self.path, payload)
        except (OSError, RuntimeError) as error:  # a full disk, a lost mount: the run itself can still finish
            self.failed = True
            print(f"{self.label}: warning: could not write checkpoint {self.path} ({write_reason(error)}); "
                  "training continues without it", file=sys.stderr, flush=True)
            return
        if delay := os.environ.get(DELAY_ENV):
            time.sleep(float(delay))

    def discard(self) -> None:
        """Delete the checkpoint (after the stage's outputs are written, or when it cannot be used)."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass  # not empty (a comparison run's checkpoints below it) or already gone


def checkpoint_folders(name: str, params: BaseModel) -> list[Path]:
    """The folder stage `name` writes its resume checkpoint into (none when runtime.checkpoint_every is 0)."""
    return [CHECKPOINTS / name] if params.runtime.checkpoint_every else []


def stage_checkpoint(name: str, params: BaseModel, *, sections: Iterable[str], inputs: Iterable[Path],
                     parts: Mapping[str, Any], label: str | None = None) -> ResumeCheckpoint:
    """The checkpoint of stage `name`, keyed by the named params sections and input files."""
    every = params.runtime.checkpoint_every
    key = run_key({section: section_values(params, section) for section in sections}, inputs) if every else ""
    return ResumeCheckpoint(name, key, every=every, parts=parts, label=label)
