"""CLID: the label-free meta loss of CLID-MU (Hu et al., KDD 2025; `clid_loss` in the official `utilities.py`).

CLID = (1/n)·Σ_i Σ_j B_ij·(−log(A_ij + eps)): A is the row softmax of the (negatives-clipped) cosine similarities
of the penultimate embeddings at temperature τ, B the row-normalised similarities of the L2-normalised softmax
outputs. With the official detaches, gradient flows only through the numerator of B (the predictions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def clid_loss(
    embedding: Tensor,
    logits: Tensor,
    *,
    tau: float = 0.5,
    eps: float = 1e-7,
    detach_target: bool = True,
    detach_norm: bool = True,
    clip_negative: bool = True,
    include_diagonal: bool = True,
) -> Tensor:
    """CLID of a meta batch from its embeddings h (n×d) and logits z (n×C); takes no labels.

    Computed in at least float32 (lower-precision inputs are cast up, autocast is disabled inside).
    Defaults are the official ones. `detach_target` stops gradient through A, `detach_norm` through the row sums
    of w, `clip_negative` sets negative similarities to 0 (they still enter the softmax as exp(0)).
    `include_diagonal=False` is an ablation only: it removes the diagonal from both A (masked out of the softmax)
    and w (so it is absent from B and from its row sums); it needs n ≥ 2.
    """
    dtype = torch.promote_types(torch.promote_types(embedding.dtype, logits.dtype), torch.float32)
    n = embedding.shape[0]
    with torch.autocast(embedding.device.type, enabled=False):
        h = F.normalize(embedding.to(dtype), dim=1)
        s = h @ h.T / tau
        if clip_negative:
            s = F.relu(s)
        p = F.normalize(torch.softmax(logits.to(dtype), dim=1), dim=1)
        w = p @ p.T
        if not include_diagonal:
            off = ~torch.eye(n, dtype=torch.bool, device=s.device)
            s = s.masked_fill(~off, float("-inf"))
            w = w * off
        a = torch.softmax(s, dim=1)
        if detach_target:
            a = a.detach()
        norm = w.sum(dim=1, keepdim=True)
        b = w / (norm.detach() if detach_norm else norm)
        return (b * -torch.log(a + eps)).sum(dim=1).mean()
