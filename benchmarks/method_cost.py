"""Cost of a stage-two epoch per method, relative to CE, measured so that machine load cancels out.

The comparison tables time each method in its own block of minutes; on a shared machine the load changes
between blocks and the ratios with it. Here one workspace builds one cached stage one (`dvc repro`), then
every method trains `--epochs` stage-two epochs in turn, for `--rounds` rounds (the order rotates each round),
so CE is always measured minutes apart from the others. Per run: the median over epochs 2.. of
(batch-loop seconds + the method's per-epoch work); per method: the median over rounds of its ratio to the CE
run of the same round, and the median seconds.

Usage:
    python benchmarks/method_cost.py [--runs benchmarks/all_methods_runs.yaml] [--rounds 3] [--epochs 4]
        [--out benchmarks/results/digits_method_cost.md]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_all import ROOT, run, workspace  # noqa: E402


def epoch_cost(log: Path) -> float:
    """Median of (train_seconds + method_seconds) over every epoch but the first (warm-up, allocations)."""
    with log.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    costs = [float(r["train_seconds"]) + float(r.get("method_seconds") or 0.0) for r in rows]
    return statistics.median(costs[1:] if len(costs) > 1 else costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks/all_methods_runs.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="stage-two epochs per timed run (≥ 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/digits_method_cost.md")
    args = parser.parse_args()
    runs = yaml.safe_load(args.runs.read_text())
    if "ce" not in runs:
        raise SystemExit("--runs must contain a run named 'ce' (the reference)")
    names = list(runs)
    ws = workspace({"kind": "symmetric_exclusive", "rate": 0.4}, runs, [0], args.epochs)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    try:
        run(["dvc", "init", "-q", "--no-scm"], ws)
        run(["dvc", "repro"], ws)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            measured = {}
            for name in order:
                overrides = dict(runs[name])
                method = overrides.pop("method")
                folder = ws / "outputs" / "cost" / f"{name}-{r}"
                sets = sum((["--set", f"{k}={json.dumps(v)}"] for k, v in overrides.items()), [])
                run([sys.executable, "-m", "components.stages.stage2", "--method", method, "--seed", "0",
                     "--out", str(folder), *sets], ws)
                measured[name] = epoch_cost(folder / "log.tsv")
                shutil.rmtree(folder)
            for name in names:
                seconds[name].append(measured[name])
                ratios[name].append(measured[name] / measured["ce"])
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {measured[n] / measured['ce']:.2f}" for n in names),
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    lines = [
        f"# Stage-two cost per epoch on digits ({dt.date.today()}, 2 CPU cores, sym-40, small CNN, batch 64)",
        "",
        f"{args.rounds} rounds × {len(names)} methods × {args.epochs} epochs, order rotated per round; seconds = median over "
        "rounds of each run's median epoch (epochs 2..); × CE = median over rounds of the ratio to that round's CE run.",
        "",
        "| method | s / epoch | × CE | × CE per round |",
        "|---|---:|---:|---|",
    ]
    for name in names:
        per_round = ", ".join(f"{x:.2f}" for x in ratios[name])
        lines.append(f"| {name} | {statistics.median(seconds[name]):.3f} | {statistics.median(ratios[name]):.2f} | {per_round} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
