"""benchmarks/classifier_passes.py: what its dispatch mode counts, and its table on real stage-two runs."""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import classifier_passes  # noqa: E402


def test_counter_sees_the_first_convolution_only_and_splits_recording_from_no_graph():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3))
    counter = classifier_passes.FirstConvCounter(channels=3)
    with counter:
        net(torch.randn(7, 3, 8, 8))  # inactive: not counted
        counter.active = True
        net(torch.randn(5, 3, 8, 8)).sum().backward()
        with torch.no_grad():
            net(torch.randn(2, 3, 8, 8))
    assert counter.counts == {"forward_graph": 5, "forward_no_graph": 2, "backward": 5}


def test_ce_is_the_unit_and_metalabelnet_pays_three_backwards(tmp_path):
    assert classifier_passes.main(["--epochs", "1", "--runs", "ce", "metalabelnet", "--out-dir", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "classifier_passes.json").read_text())
    rows = doc["rows"]
    assert rows["ce"] == {"forward_graph": 1.0, "forward_no_graph": 0.0, "backward": 1.0, "passes_vs_ce": 1.0,
                          "cpu_ratio_to_ce": []}
    mln = rows["metalabelnet"]  # real + look-ahead + meta batch backwards; real + meta forwards, one shifted
    assert 2.8 < mln["backward"] <= 3.0 and 1.8 < mln["forward_graph"] <= 2.0 and mln["forward_no_graph"] == 1.0
    text = (tmp_path / "classifier_passes.md").read_text()
    assert "| ce | 1.00 | 0.00 | 1.00 | 1.00 | — |" in text and f"CE trains {doc['train_images']} images" in text
