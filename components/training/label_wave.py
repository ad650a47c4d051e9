"""Base-model selection by the label wave (first local minimum of the prediction-change curve).

Implements specs/ido.md §3.2 with real copies of the weights: rule `label_wave` returns epoch t−1 at the
first epoch t whose prediction change does not decrease; `label_wave_aliased` reproduces the official
code's aliasing (epoch t); `last` takes the final epoch.
"""

from __future__ import annotations

import torch


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer (never a view of the live tensors)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class LabelWaveSelector:
    """Feed it each epoch's prediction-change count; it keeps the chosen epoch and its weights."""

    def __init__(self, rule: str, epochs: int, n_samples: int):
        self.rule, self.epochs = rule, epochs
        self.prev_change = n_samples
        self.candidate: tuple[int, dict[str, torch.Tensor]] | None = None
        self.selected_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, change: int | None, model: torch.nn.Module) -> None:
        """Call after every epoch (change is None at epoch 1)."""
        if self.selected_epoch is not None:
            return
        if self.rule == "last" or change is None:
            if self.rule == "last" and epoch == self.epochs:
                self._choose(epoch, snapshot(model))
            return
        decreasing = change < self.prev_change
        if decreasing and epoch < self.epochs:
            self.prev_change = change
            self.candidate = (epoch, snapshot(model))
            return
        if decreasing or self.candidate is None or self.rule == "label_wave_aliased":
            self._choose(epoch, snapshot(model))  # last epoch still decreasing, or the official aliasing
        else:
            self._choose(*self.candidate)

    def _choose(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        self.selected_epoch, self.state, self.candidate = epoch, state, None
