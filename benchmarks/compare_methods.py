"""Compare stage-two methods (CE vs IDO by default) across noise settings and seeds, in-process.

For every noise setting and seed the script builds a fresh temporary workspace, writes a params.yaml
there (the project's params.yaml with the setting, seeds and epochs overridden) and runs the pipeline
stages' `main()` functions in it: `data`, `noise` and `stage1` once, then `stage2` and `evaluate` once per
method, all from the same stage-one outputs. The data split stays fixed (data.seed = 0); the seed `s`
drives the noise draw and both training stages (noise.seed = stage1.seed = stage2.seed = s).

It measures, per (setting, method), averaged over seeds: the realised noise rate; test accuracy of the
validation-selected checkpoint (the headline) and of the last epoch, as mean ± sample std; the oracle
(best test accuracy over stage-two epochs, chosen on the test set, so optimistic and never a headline);
the noise-detection AUC of stage one's wrong-event scores and, where the method has its own scores, of
stage two's; and stage two's seconds per epoch.

Timing: seconds per epoch depend on the machine and on whatever else it is doing, so absolute seconds
are not comparable between runs. The comparable figure is the ratio to CE's seconds per epoch for the
same setting, measured in the same run (the CE row is 1.00).

Usage:
    .venv/bin/python benchmarks/compare_methods.py [--seeds 0 1 2] [--methods ce ido]
        [--settings sym-40 sym-60 pair-40 instance-40] [--out FILE.md]
        [--stage1-epochs N] [--stage2-epochs N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from components import paths  # noqa: E402
from components.config import METHOD_NAMES, Params, dump_params, load_params, validate_params  # noqa: E402
from components.stages import data, evaluate, noise, stage1, stage2  # noqa: E402

# name -> overrides of the `noise` section
SETTINGS: dict[str, dict[str, Any]] = {
    "sym-40": {"kind": "symmetric_exclusive", "rate": 0.4},
    "sym-60": {"kind": "symmetric_exclusive", "rate": 0.6},
    "pair-40": {"kind": "pairflip", "rate": 0.4, "sampling": "exact"},
    "instance-40": {"kind": "instance", "rate": 0.4},
}
DASH = "—"


@dataclass(frozen=True)
class RunResult:
    """What one (setting, seed, method) run produced, read from metrics/eval.json and metrics/stage2.json."""

    setting: str
    seed: int
    method: str
    actual_noise_rate: float
    test_acc_selected: float
    test_acc_last: float
    test_acc_oracle: float
    noise_auc: float | None
    noise_auc_stage2: float | None
    seconds_per_epoch: float


# --- parameters -------------------------------------------------------------------------------------


def make_params(
    base: Params, setting: str, seed: int, method: str, stage1_epochs: int | None, stage2_epochs: int | None
) -> Params:
    """The project's params with one setting, seed, method and (optionally) epoch counts applied, re-validated."""
    raw = base.model_dump(mode="json")
    raw["data"]["seed"] = 0
    raw["noise"].update(SETTINGS[setting], seed=seed)
    raw["stage1"]["seed"] = seed
    raw["stage2"].update(seed=seed, method=method)
    if stage1_epochs is not None:
        raw["stage1"]["epochs"] = stage1_epochs
    if stage2_epochs is not None:
        raw["stage2"]["epochs"] = stage2_epochs
    return validate_params(raw, source=f"benchmark params ({setting}, seed {seed}, {method})")


def write_params(params: Params) -> None:
    """Write params.yaml in the current directory (the temporary workspace)."""
    Path("params.yaml").write_text(dump_params(params))


# --- running stages ---------------------------------------------------------------------------------


def run_quietly(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main with its stdout captured; on failure the captured output goes to stderr."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            main()
    except BaseException:
        sys.stderr.write(f"--- output of stage {name} before it failed ---\n{captured.getvalue()}")
        raise


def read_result(setting: str, seed: int, method: str) -> RunResult:
    """Collect one run's figures from the workspace's metrics files."""
    ev = json.loads(Path(paths.EVAL_METRICS).read_text())
    s2 = json.loads(Path(paths.STAGE2_METRICS).read_text())
    return RunResult(
        setting=setting,
        seed=seed,
        method=method,
        actual_noise_rate=ev["actual_noise_rate"],
        test_acc_selected=ev["test_acc_selected"],
        test_acc_last=ev["test_acc_last"],
        test_acc_oracle=ev["test_acc_oracle"],
        noise_auc=ev["noise_auc"],
        noise_auc_stage2=ev["noise_auc_stage2"],
        seconds_per_epoch=s2["seconds_per_epoch"],
    )


def run_setting_seed(
    base: Params, setting: str, seed: int, methods: Sequence[str], stage1_epochs: int | None, stage2_epochs: int | None
) -> list[RunResult]:
    """data, noise, stage1 once in a fresh workspace; then stage2 + evaluate per method. Cleans up after itself."""
    workspace = tempfile.mkdtemp(prefix=f"lnlflow-bench-{setting}-s{seed}-")
    previous = os.getcwd()
    results: list[RunResult] = []
    try:
        os.chdir(workspace)
        write_params(make_params(base, setting, seed, methods[0], stage1_epochs, stage2_epochs))
        for name, module in (("data", data), ("noise", noise), ("stage1", stage1)):
            run_quietly(name, module.main)
        for method in methods:
            write_params(make_params(base, setting, seed, method, stage1_epochs, stage2_epochs))
            run_quietly("stage2", stage2.main)
            run_quietly("evaluate", evaluate.main)
            result = read_result(setting, seed, method)
            results.append(result)
            print(
                f"done: {setting} seed {seed} {method}: selected {100 * result.test_acc_selected:.2f}%, "
                f"{result.seconds_per_epoch:.2f} s/epoch",
                file=sys.stderr,
                flush=True,
            )
    finally:
        os.chdir(previous)
        shutil.rmtree(workspace, ignore_errors=True)
    return results


# --- summarising ------------------------------------------------------------------------------------


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the non-missing values (None if there are none)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def mean_std_pct(values: Sequence[float]) -> str:
    """'mean ± std' in percent; sample std (ddof=1) when there are at least two values, else the mean alone."""
    text = f"{100 * statistics.fmean(values):.2f}"
    return f"{text} ± {100 * statistics.stdev(values):.2f}" if len(values) >= 2 else text


def fmt(value: float | None, spec: str) -> str:
    """Format a number, or a dash when it is missing."""
    return DASH if value is None else format(value, spec)


def summary_rows(results: Sequence[RunResult], settings: Sequence[str], methods: Sequence[str]) -> list[list[str]]:
    """One table row per (setting, method), with the time ratio to CE within the same setting."""
    rows = []
    for setting in settings:
        ce_runs = [r for r in results if r.setting == setting and r.method == "ce"]
        ce_seconds = mean([r.seconds_per_epoch for r in ce_runs])
        for method in methods:
            runs = [r for r in results if r.setting == setting and r.method == method]
            if not runs:
                continue
            seconds = mean([r.seconds_per_epoch for r in runs])
            oracle = mean([r.test_acc_oracle for r in runs])
            rows.append([
                setting,
                method,
                fmt(mean([r.actual_noise_rate for r in runs]), ".3f"),
                mean_std_pct([r.test_acc_selected for r in runs]),
                mean_std_pct([r.test_acc_last for r in runs]),
                f"{100 * oracle:.2f} (test-selected)",
                fmt(mean([r.noise_auc for r in runs]), ".4f"),
                fmt(mean([r.noise_auc_stage2 for r in runs]), ".4f"),
                fmt(seconds, ".3f"),
                fmt(seconds / ce_seconds if seconds is not None and ce_seconds else None, ".2f"),
            ])
    return rows


HEADER = [
    "setting", "method", "actual noise rate", "test acc selected (%)", "test acc last (%)", "oracle (%)",
    "noise AUC stage 1", "noise AUC stage 2", "s / stage-2 epoch", "time ratio vs CE",
]


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; numeric columns right-aligned."""
    align = [":---", ":---"] + ["---:"] * (len(HEADER) - 2)
    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def facts(base: Params, args: argparse.Namespace, elapsed: float) -> str:
    """The conditions the table was measured under."""
    s1 = args.stage1_epochs or base.stage1.epochs
    s2 = args.stage2_epochs or base.stage2.epochs
    return "\n".join([
        f"- seeds: {', '.join(map(str, args.seeds))} (noise.seed = stage1.seed = stage2.seed = seed; data.seed = 0)",
        f"- epochs: stage 1 = {s1}, stage 2 = {s2}",
        f"- torch threads: {torch.get_num_threads()}; CPU count: {os.cpu_count()}; device: {base.runtime.device}",
        f"- torch {torch.__version__}, python {sys.version.split()[0]}",
        f"- date: {dt.date.today().isoformat()}; total wall time: {elapsed / 60:.1f} min",
        "- oracle = best test accuracy over stage-two epochs (chosen on the test set; optimistic, not a headline)",
        "- accuracies: mean ± sample std (ddof=1) over seeds; other columns: means over seeds",
        "- seconds per epoch are machine- and load-dependent: compare the ratios, not the absolute seconds",
    ])


# --- entry point ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=["ce", "ido"])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--stage1-epochs", type=int, default=None, help="default: params.yaml's stage1.epochs")
    parser.add_argument("--stage2-epochs", type=int, default=None, help="default: params.yaml's stage2.epochs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = load_params(ROOT / "params.yaml")
    out = args.out.resolve() if args.out else None  # resolve before any chdir
    start = time.perf_counter()
    results: list[RunResult] = []
    for setting in args.settings:
        for seed in args.seeds:
            results += run_setting_seed(base, setting, seed, args.methods, args.stage1_epochs, args.stage2_epochs)
    elapsed = time.perf_counter() - start
    table = markdown_table(summary_rows(results, args.settings, args.methods))
    text = f"{table}\n\n{facts(base, args, elapsed)}\n"
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
