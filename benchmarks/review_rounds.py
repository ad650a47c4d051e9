"""Review rounds on digits: does reviewing lnlflow's flagged labels beat reviewing labels chosen at random?

For each noise setting and seed, one workspace runs the pipeline (`dvc repro`, the shipped params: IDO). Then,
for each review budget K and each strategy, a chain of `--rounds` rounds: a simulated reviewer looks at K
training labels it has not looked at before — the K most probably wrong ones of the current
reports/label_issues.csv (`flagged`), or K drawn at random (`random`) — and writes the true label of each
(the source's ground truth) with trusted 1 into data.corrections; `dvc repro` retrains on the corrected labels.
Per round: precision@K (the share of the K reviewed labels that were wrong), labels fixed so far, the noise
rate left, and test accuracy of the selected model. Chains start from the same round 0 (DVC's run-cache
restores it). Means ± std over seeds.

Usage:
    python benchmarks/review_rounds.py [--settings sym-40 pair-40] [--seeds 0 1 2] [--budgets 50 100 200]
        [--rounds 2] [--threads 1] [--out benchmarks/results/digits_review_rounds.md]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_all import SETTINGS, run, workspace  # noqa: E402


def truth_labels() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target


def report(ws: Path) -> list[dict[str, str]]:
    with open(ws / "reports/label_issues.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def set_params(ws: Path, **sections) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def measure(ws: Path) -> dict[str, float]:
    metrics = json.loads((ws / "metrics/eval.json").read_text())
    return {"test_acc": metrics["test_acc_selected"], "noise_left": metrics["noise_rate_after_corrections"]}


def chain(ws: Path, *, strategy: str, budget: int, rounds: int, seed: int, truth: np.ndarray) -> list[dict]:
    """Rounds of one strategy from round 0; returns one row per round (round 0 included)."""
    corrections = ws / "corrections.csv"
    corrections.unlink(missing_ok=True)
    set_params(ws, data={"corrections": None})
    run(["dvc", "repro"], ws)  # round 0 (from the run-cache after the first chain)
    rows = [{"round": 0, "precision": None, "fixed": 0, **measure(ws)}]
    reviewed: dict[int, int] = {}
    rng = np.random.default_rng([seed, budget, 7])
    fixed = 0
    for r in range(1, rounds + 1):
        candidates = [row for row in report(ws) if int(row["source_row"]) not in reviewed]
        if strategy == "random":
            picked = [candidates[i] for i in rng.choice(len(candidates), size=budget, replace=False)]
        else:
            picked = candidates[:budget]  # most probably wrong first (verified rows are last and skipped)
        wrong = sum(int(row["given_label"]) != truth[int(row["source_row"])] for row in picked)
        fixed += wrong
        for row in picked:
            reviewed[int(row["source_row"])] = int(truth[int(row["source_row"])])
        lines = ["source_row,label,trusted"] + [f"{s},{label},1" for s, label in sorted(reviewed.items())]
        corrections.write_text("\n".join(lines) + "\n")
        set_params(ws, data={"corrections": "corrections.csv"})
        run(["dvc", "repro"], ws)
        rows.append({"round": r, "precision": wrong / budget, "fixed": fixed, **measure(ws)})
    return rows


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "—"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["sym-40", "pair-40"], choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", type=int, default=[50, 100, 200])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/digits_review_rounds.md"))
    args = parser.parse_args()
    truth = truth_labels()
    results: dict[tuple, list[dict]] = {}
    start = time.perf_counter()
    for name in args.settings:
        for seed in args.seeds:
            ws = workspace(SETTINGS[name], {}, [seed], None, args.threads)
            try:
                set_params(ws, noise={"seed": seed}, stage1={"seed": seed}, stage2={"seed": seed})
                run(["dvc", "init", "-q", "--no-scm"], ws)
                for budget in args.budgets:
                    for strategy in ("flagged", "random"):
                        results[(name, budget, strategy, seed)] = chain(
                            ws, strategy=strategy, budget=budget, rounds=args.rounds, seed=seed, truth=truth)
                        print(f"done: {name} seed {seed} K={budget} {strategy} "
                              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
            finally:
                shutil.rmtree(ws, ignore_errors=True)
    lines = [f"# Review rounds on digits ({dt.date.today()}, IDO at the shipped params, seeds {args.seeds}, "
             f"torch threads {args.threads})", "",
             "| setting | K | reviewer | round | precision@K (%) | labels fixed | noise left (%) | test acc (%) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name in args.settings:
        for budget in args.budgets:
            for strategy in ("flagged", "random"):
                per_seed = [results[(name, budget, strategy, s)] for s in args.seeds]
                for r in range(args.rounds + 1):
                    if r == 0 and strategy == "random":
                        continue  # the same round 0 as the flagged chain
                    at = [rows[r] for rows in per_seed]
                    lines.append(
                        f"| {name} | {budget} | {'—' if r == 0 else strategy} | {r} | "
                        f"{fmt([a['precision'] for a in at])} | {fmt([a['fixed'] for a in at], 1.0, 0)} | "
                        f"{fmt([a['noise_left'] for a in at])} | {fmt([a['test_acc'] for a in at])} |")
    lines += ["", f"precision@K = share of the K labels reviewed in that round that were wrong; labels fixed = "
              f"cumulative; noise left = share of training labels still wrong after the corrections. "
              f"({time.perf_counter() - start:.0f} s)", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
