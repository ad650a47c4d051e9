"""Base-model selection by the label wave (first local minimum of the prediction-change curve).

The base-model rule of IDO's stage one (Zhang et al., NeurIPS 2025), after "Label Wave" (Yuan, Feng & Liu,
ICLR 2025): rule `label_wave` returns epoch t−1 at the first epoch t whose prediction change does not decrease;
`last` takes the final epoch. The official IDO code keeps that "previous epoch" as `model.state_dict()` without
copying it, so the tensors follow the live weights and the saved model is really epoch t. We store real copies,
since the rule means t−1; `label_wave_aliased` reproduces the official result (epoch t).
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
