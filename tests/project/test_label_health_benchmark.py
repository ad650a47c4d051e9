"""benchmarks/label_health.py's table: errors, their mean and worst, and coverage, from the measured rows."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import label_health  # noqa: E402


def row(setting: str, seed: int, actual: float, estimated: float, interval: list[float], ce_last: float) -> dict:
    return {"setting": setting, "seed": seed, "method": "ido", "actual_noise_rate": actual,
            "estimated_noise_rate": estimated, "interval": interval, "error": estimated - actual,
            "covered": interval[0] <= actual <= interval[1], "ce_last_estimate": ce_last,
            "last_epoch_estimate": ce_last, "agrees_with_given": 1 - actual + 0.01,
            "top_confusion": {"given": "3", "true": "8", "share": 0.125} if seed == 0 else None}


def test_table_rows_and_mean_absolute_errors():
    doc = {"commit": "0123456789abcdef", "dirty": False, "started": "2026-12-06T10:00:00+00:00",
           "command": "python benchmarks/label_health.py", "seeds": [0, 1],
           "machine": {"cores": 2, "cpu": "test cpu", "torch_threads": 1, "device": "cpu"},
           "rows": [row("sym-40", 0, 0.40, 0.41, [0.38, 0.44], 0.36), row("sym-40", 1, 0.40, 0.37, [0.34, 0.39], 0.35),
                    row("pair-40", 0, 0.396, 0.396, [0.37, 0.42], 0.30)]}
    text = label_health.render(doc)
    assert "| sym-40 | 0 | 40.00 | 41.00 | 38.00 – 44.00 | +1.00 | 36.00 | 3 → 8, 12.50 % |" in text
    assert "| sym-40 | 1 | 40.00 | 37.00 | 34.00 – 39.00 | -3.00 | 35.00 | — |" in text
    assert "| sym-40 | 2.00 | 3.00 | 1 of 2 | 4.50 |" in text  # mean |error| (1 + 3) / 2, worst 3, CE (4 + 5) / 2
    assert "| pair-40 | 0.00 | 0.00 | 1 of 1 | 9.60 |" in text
    assert "| all | 1.33 | 3.00 | 2 of 3 | 6.20 |" in text


def test_methods_table_when_several_methods_ran():
    rows = [row("sym-40", 0, 0.40, 0.41, [0.38, 0.44], 0.36), row("sym-40", 1, 0.40, 0.37, [0.34, 0.39], 0.35)]
    ce = [dict(r, method="ce", estimated_noise_rate=0.35, error=-0.05) for r in rows]
    doc = {"commit": "0123456789abcdef", "dirty": True, "started": "2026-12-06T10:00:00+00:00", "command": "x",
           "seeds": [0, 1], "machine": {"cores": 2, "cpu": "cpu", "torch_threads": 1, "device": "cpu"},
           "rows": rows + ce}
    text = label_health.render(doc)
    assert "| all | 2.00 | 3.00 | 1 of 2 | 4.50 |" in text  # the main tables: the first method (ido) only
    assert "| ido | 2.00 | 4.50 | 3.00 | +1.00 |" in text
    assert "| ce | 5.00 | 4.50 | 5.00 | +1.00 |" in text
