"""Training-step time of the default models on CPU for 1 vs 2 torch threads (why params.yaml says threads: 1).

Small models on 8×8 digits spend more time synchronising threads than computing; the figure that
matters is the ratio measured in this run, not the absolute milliseconds (the machine is shared).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from components.models import build_model


def step_ms(arch: str, threads: int, *, steps: int, batch: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model({"arch": arch, "input_shape": [1, 8, 8], "n_classes": 10, "hidden": 256, "width": 32, "dropout": 0.0})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.rand(batch, 1, 8, 8), torch.randint(0, 10, (batch,))
    for _ in range(5):  # warm-up
        loss = F.cross_entropy(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print("| model | 1 thread (ms/step) | 2 threads (ms/step) | 2 threads / 1 thread |")
    print("|---|---:|---:|---:|")
    for arch in ("cnn", "mlp"):
        one = step_ms(arch, 1, steps=args.steps, batch=args.batch)
        two = step_ms(arch, 2, steps=args.steps, batch=args.batch)
        print(f"| {arch} | {one:.2f} | {two:.2f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
