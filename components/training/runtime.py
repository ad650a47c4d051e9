"""GPU speed settings (`runtime.amp`, `runtime.channels_last`, `runtime.compile`) resolved for a device.

On the CPU every one of them is a no-op, so CPU results stay bit-identical whatever they say. On CUDA:
bf16 autocast around each training step's forward passes (models return float32 logits, so losses are
computed in fp32; the meta step turns autocast off), channels-last weights for conv models, and
`torch.compile` of the model in place — names, attributes and checkpoints unchanged; the meta step's
`functional_call` runs the eager forward (`eager`).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ContextManager

import torch
from torch import nn

from components.errors import LnlError


@dataclass(frozen=True)
class Runtime:
    """The effective settings: what actually happens on `device`."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    def autocast(self) -> ContextManager:
        """bf16 autocast on this device, or nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Channels-last weights (conv models only), then `torch.compile` in place; returns the same module."""
        if self.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile()
        return model


def resolve_runtime(cfg, device: torch.device) -> Runtime:
    """`cfg` (RuntimeParams) for `device`; a setting this GPU cannot honour is one clear error, before any work."""
    if device.type != "cuda":
        return Runtime(device)
    amp_dtype = None
    if cfg.amp != "off":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        if cfg.amp == "bf16" and not native:
            raise LnlError(f"runtime.amp: 'bf16' but {torch.cuda.get_device_name(device)} has no native bf16 "
                           "support; use amp: auto or off")
        amp_dtype = torch.bfloat16 if native else None
    if cfg.compile and importlib.util.find_spec("triton") is None:
        raise LnlError("runtime.compile: torch.compile on CUDA needs the 'triton' package, which is not "
                       "installed; install it or set compile: false")
    return Runtime(device, amp_dtype, cfg.channels_last, cfg.compile)


@contextlib.contextmanager
def eager(model: nn.Module) -> Iterator[None]:
    """`model` runs its uncompiled forward for the duration (torch.func and double backward need it).

    `nn.Module.compile()` keeps the compiled forward in `_compiled_call_impl`; it is set aside and restored.
    """
    compiled = model.__dict__.get("_compiled_call_impl")
    if compiled is None:
        yield
        return
    model._compiled_call_impl = None
    try:
        yield
    finally:
        model._compiled_call_impl = compiled
