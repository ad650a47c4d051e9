"""components.training.label_wave (the base-model rule) and stage one's wrong-event recorder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.stages.stage1 import WrongEventRecorder
from components.training.label_wave import LabelWaveSelector, snapshot
from components.training.loop import batches

torch.set_num_threads(1)

# --- LabelWaveSelector ------------------------------------------------------------------------------------


def _fill(model: nn.Module, value: float) -> None:
    """Overwrite every parameter in place (so a stored view of the live tensors would change too)."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def _run_selector(rule: str, changes: list[int | None], n_samples: int = 1000) -> tuple[LabelWaveSelector, nn.Module]:
    """Epoch e sets every weight to float(e), then reports changes[e-1]; training goes on to the end."""
    model = nn.Linear(3, 2)
    selector = LabelWaveSelector(rule, len(changes), n_samples)
    for epoch, change in enumerate(changes, start=1):
        _fill(model, float(epoch))
        selector.update(epoch, change, model)
    _fill(model, -1.0)  # keep mutating after the end, like stage one reloading weights
    return selector, model


def _weights_epoch(state: dict[str, torch.Tensor]) -> float:
    values = torch.cat([v.flatten() for v in state.values()]).unique()
    assert values.numel() == 1, f"state mixes epochs: {values}"
    return float(values)


WAVE = [None, 100, 80, 90, 70, 60]  # first non-decrease at epoch 4 -> label wave picks epoch 3


def test_label_wave_returns_previous_epoch_weights():
    selector, model = _run_selector("label_wave", WAVE)
    assert selector.selected_epoch == 3
    assert _weights_epoch(selector.state) == 3.0  # not 4 (aliasing), not 6 (later epochs), not -1 (live view)
    for value in selector.state.values():
        assert value.device.type == "cpu"
    # the chosen state loads back into a model
    model.load_state_dict(selector.state)
    assert float(model.weight.detach()[0, 0]) == 3.0


def test_label_wave_aliased_returns_current_epoch():
    selector, _ = _run_selector("label_wave_aliased", WAVE)
    assert selector.selected_epoch == 4
    assert _weights_epoch(selector.state) == 4.0


def test_last_rule_returns_final_epoch():
    selector, _ = _run_selector("last", WAVE)
    assert selector.selected_epoch == len(WAVE)
    assert _weights_epoch(selector.state) == float(len(WAVE))


@pytest.mark.parametrize("rule", ["label_wave", "label_wave_aliased"])
def test_monotone_decreasing_curve_selects_final_epoch(rule):
    selector, _ = _run_selector(rule, [None, 100, 80, 60, 40, 20])
    assert selector.selected_epoch == 6
    assert _weights_epoch(selector.state) == 6.0


def test_plateau_counts_as_not_decreasing():
    selector, _ = _run_selector("label_wave", [None, 100, 80, 80, 10])
    assert selector.selected_epoch == 3  # epoch 3 has 80 < 100; epoch 4 ties with 80 -> epoch 3
    assert _weights_epoch(selector.state) == 3.0


def test_no_decrease_at_epoch_two_selects_epoch_two():
    selector, _ = _run_selector("label_wave", [None, 50, 40], n_samples=50)
    assert selector.selected_epoch == 2
    assert _weights_epoch(selector.state) == 2.0


def test_snapshot_is_a_copy():
    model = nn.Linear(2, 2)
    _fill(model, 1.0)
    state = snapshot(model)
    _fill(model, 2.0)
    assert _weights_epoch(state) == 1.0


# --- WrongEventRecorder ------------------------------------------------------------------------------------------


def _logits(preds: list[int], n_classes: int = 3) -> torch.Tensor:
    return F.one_hot(torch.tensor(preds), n_classes).float() * 5.0


def test_wrong_events_count_only_mismatches():
    labels = torch.tensor([0, 1, 2, 1])
    rec = WrongEventRecorder(4, epochs=3, device=torch.device("cpu"))
    losses = torch.arange(4, dtype=torch.float32)
    # epoch 1, two batches: predictions [0, 2 | 2, 0] -> samples 1 and 3 wrong
    rec.record(1, torch.tensor([0, 1]), _logits([0, 2]), labels[[0, 1]], losses[:2])
    rec.record(1, torch.tensor([2, 3]), _logits([2, 0]), labels[[2, 3]], losses[2:])
    assert rec.wrong.tolist() == [0, 1, 0, 1]
    # epoch 2, shuffled order: predictions for samples [3, 0, 2, 1] = [0, 1, 2, 1] -> samples 3 and 0 wrong
    idx = torch.tensor([3, 0, 2, 1])
    rec.record(2, idx, _logits([0, 1, 2, 1]), labels[idx], losses[idx] + 10)
    assert rec.wrong.tolist() == [1, 1, 0, 2]
    assert rec.preds[0].tolist() == [0, 2, 2, 0]
    assert rec.preds[1].tolist() == [1, 1, 2, 0]
    assert rec.losses[1].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert rec.prediction_change(1) is None
    assert rec.prediction_change(2) == 2  # samples 0 (0 -> 1) and 1 (2 -> 1)


def test_wrong_events_at_most_once_per_epoch():
    labels = torch.zeros(5, dtype=torch.long)
    rec = WrongEventRecorder(5, epochs=4, device=torch.device("cpu"))
    for epoch in range(1, 5):
        rec.record(epoch, torch.arange(5), _logits([1] * 5), labels, torch.zeros(5))
        assert rec.wrong.tolist() == [epoch] * 5
        if epoch > 1:
            assert rec.prediction_change(epoch) == 0
