"""Generic capture and in-place restore of training state, for resume checkpoints.

`capture(value)` turns live training objects into plain data that `torch.save` writes and `torch.load(...,
weights_only=True)` reads back: tensors (detached, on their device), numpy arrays and scalars (as tagged tensors),
torch and numpy generators (their states), anything with `state_dict`/`load_state_dict` (modules, optimisers,
schedulers, stage-two methods) through those, lists/tuples/dicts element-wise, and lnlflow's own objects
(classes defined under `components.` or in a stage run as `__main__`) attribute by attribute. Configuration
(pydantic models), devices, dtypes and plain functions are constants and are skipped; anything else is a
TypeError, so no state is lost silently.

`restore(current, saved)` puts a captured state back into the freshly built `current`: generators, modules,
optimisers, dicts, lists and lnlflow objects in place (so every reference to them stays valid); tensors and
arrays are replaced by the saved values (tensors moved to the current one's device).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor

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
