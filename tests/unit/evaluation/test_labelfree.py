"""Label-free selection: the k lowest-CLID epochs, their summed test logits, the best epoch's weights."""

from __future__ import annotations

import math

import pytest
import torch

from components.config import validate_params
from components.errors import LnlError
from components.evaluation.labelfree import LowestClidSelector


class Scripted(torch.nn.Module):
    """A model whose embedding is either collapsed (CLID = log n) or spread, and whose logits carry a tag."""

    def __init__(self):
        super().__init__()
        self.tag = torch.nn.Parameter(torch.zeros(()))
        self.collapsed = True

    def forward(self, x):
        embedding = torch.ones_like(x) if self.collapsed else x
        logits = x[:, :3] * 5 + self.tag
        return logits, embedding


def test_keeps_k_lowest_and_sums_their_test_logits():
    torch.manual_seed(0)
    pool, x_test = torch.randn(200, 8), torch.randn(7, 8)
    model = Scripted()
    selector = LowestClidSelector(pool, k=2, tau=0.5)
    clids = {}
    for epoch, (collapsed, tag) in enumerate([(True, 0.0), (False, 1.0), (True, 2.0), (False, 3.0)], start=1):
        model.collapsed = collapsed
        with torch.no_grad():
            model.tag.fill_(tag)
        clids[epoch] = selector.update(epoch, model, x_test)
    assert math.isclose(clids[1], math.log(100), rel_tol=1e-5)  # identical embeddings: log of the batch size
    expected = sorted(clids, key=lambda e: (clids[e], e))[:2]
    assert selector.epochs() == expected
    tags = {1: 0.0, 2: 1.0, 3: 2.0, 4: 3.0}
    manual = sum(x_test[:, :3] * 5 + tags[e] for e in expected)
    torch.testing.assert_close(selector.ensemble_logits(), manual, atol=2e-2, rtol=1e-3)  # stored as float16
    assert float(selector.best_state["tag"]) == tags[expected[0]]


def test_compare_runs_are_validated():
    with pytest.raises(LnlError, match="compare.runs.*needs method"):
        validate_params({"compare": {"runs": {"x": {"method": "nope"}}}})
    with pytest.raises(LnlError, match="run name 'a.b'"):
        validate_params({"compare": {"runs": {"a.b": {"method": "ce"}}}})
    with pytest.raises(LnlError, match="compare.seeds"):
        validate_params({"compare": {"seeds": []}})
