"""Optimiser step time: torch's per-tensor loop (its CPU default), `foreach` and `fused` kernels, on the
parameters lnlflow steps every batch — why components/training/optim.py asks for the fused kernel.

    python benchmarks/optimizer_step.py [--repeats 3] [--steps 200]

Each case builds its parameters with random gradients and times `optimizer.step()` in process CPU time at one
torch thread; the three implementations run interleaved in every repeat (order rotated), and the ratio to the
default is taken within the repeat. Cases: the digits CNN's AdamW (stages one and two) and SGD with Nesterov
momentum (the CIFAR presets), CLID-MU's VRI rectifier (1024-512-512) and MetaLabelNet's generator under Adam.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.methods.meta_common import Rectifier  # noqa: E402
from components.models.nets import SmallCNN  # noqa: E402

MODES = ("default", "foreach", "fused")
CASES = {  # name -> (parameters, optimiser class, its settings as lnlflow uses them)
    "digits CNN, AdamW": (lambda: SmallCNN(1, 8, 10).parameters(), torch.optim.AdamW,
                          {"lr": 1e-3, "weight_decay": 1e-5}),
    "digits CNN, SGD Nesterov": (lambda: SmallCNN(1, 8, 10).parameters(), torch.optim.SGD,
                                 {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
    "VRI rectifier, Adam": (lambda: Rectifier(128, 10).parameters(), torch.optim.Adam,
                            {"lr": 1e-2, "weight_decay": 5e-4}),
    "MetaLabelNet generator, Adam": (lambda: torch.nn.Linear(128, 10).parameters(), torch.optim.Adam,
                                     {"lr": 1e-2, "weight_decay": 1e-4}),
}


def step_ms(case: str, mode: str, steps: int) -> float:
    """Process CPU milliseconds per `optimizer.step()` (after 10 warm-up steps)."""
    make, kind, settings = CASES[case]
    torch.manual_seed(0)
    params = list(make())
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = kind(params, **settings, **({} if mode == "default" else {mode: True}))
    for _ in range(10):
        optimizer.step()
    start = time.process_time()
    for _ in range(steps):
        optimizer.step()
    return (time.process_time() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, {args.steps} steps, process CPU time; ratio = default / mode "
          "within a repeat\n")
    print("| parameters, optimiser | default ms | foreach ms | fused ms | default / foreach | default / fused |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in CASES:
        ms: dict[str, list[float]] = {m: [] for m in MODES}
        ratios: dict[str, list[float]] = {"foreach": [], "fused": []}
        for repeat in range(args.repeats):
            order = MODES[repeat % 3:] + MODES[: repeat % 3]
            got = {mode: step_ms(case, mode, args.steps) for mode in order}
            for mode, value in got.items():
                ms[mode].append(value)
            for mode in ratios:
                ratios[mode].append(got["default"] / got[mode])

        def cell(values: list[float]) -> str:
            return " / ".join(f"{v:.2f}" for v in values)

        print(f"| {case} | {cell(ms['default'])} | {cell(ms['foreach'])} | {cell(ms['fused'])} | "
              f"{cell(ratios['foreach'])} | {cell(ratios['fused'])} (median {statistics.median(ratios['fused']):.1f}×) |")


if __name__ == "__main__":
    main()
