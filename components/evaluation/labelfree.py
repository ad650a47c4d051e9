"""Label-free checkpoint selection: the epochs with the lowest mean CLID on unlabelled training images.

After every stage-two epoch (any method), the mean CLID over a fixed pool of training images is computed in
eval mode, in batches of 100; the k lowest-CLID epochs are kept with their test logits (float16), whose sum
is the ensemble prediction, and the single lowest-CLID epoch's weights are kept as a deployable model. This is
CLID-MU's label-free selection (Hu et al., KDD 2025; the official code sums the test logits of the five
lowest-CLID checkpoints): docs/evaluation.md#label-free-model-selection. No label is read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from components.methods.clid import clid_loss
from components.training.label_wave import snapshot
from components.training.loop import predict_logits


class LowestClidSelector:
    """Tracks per-epoch pool CLID and keeps the k best epochs' test logits and the best epoch's weights."""

    def __init__(self, pool: Tensor, *, k: int, tau: float, batch_size: int = 100,
                 transform: Callable[[Tensor], Tensor] | None = None):
        self.pool, self.k, self.tau, self.batch_size, self.transform = pool, k, tau, batch_size, transform
        self.history: list[tuple[int, float]] = []
        self.kept: list[tuple[float, int, Tensor]] = []  # (clid, epoch, test logits), lowest clid first
        self.best_state: dict[str, Tensor] | None = None

    @torch.no_grad()
    def pool_clid(self, model: torch.nn.Module) -> float:
        """Mean CLID over the pool's batches, model in eval mode."""
        was = model.training
        model.eval()
        values = []
        for chunk in self.pool.split(self.batch_size):
            if len(chunk) < 2:
                continue
            x = self.transform(chunk) if self.transform is not None else chunk
            logits, embedding = model(x)
            values.append(float(clid_loss(embedding, logits, tau=self.tau)))
        model.train(was)
        return sum(values) / len(values)

    def update(self, epoch: int, model: torch.nn.Module, x_test: Tensor) -> float:
        """Score this epoch; keep it if it is among the k lowest so far. Returns its CLID."""
        clid = self.pool_clid(model)
        self.history.append((epoch, clid))
        if len(self.kept) < self.k or clid < self.kept[-1][0]:
            if not self.kept or clid < self.kept[0][0]:
                self.best_state = snapshot(model)
            self.kept.append((clid, epoch, predict_logits(model, x_test).half().cpu()))
            self.kept.sort(key=lambda item: (item[0], item[1]))
            del self.kept[self.k :]
        return clid

    def epochs(self) -> list[int]:
        """The kept epochs, lowest CLID first."""
        return [epoch for _, epoch, _ in self.kept]

    def ensemble_logits(self) -> Tensor:
        """Sum of the kept epochs' test logits (float32)."""
        return torch.stack([logits.float() for _, _, logits in self.kept]).sum(0)
