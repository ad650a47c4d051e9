"""Classifier passes per training image: how many images each stage-two method sends through the classifier per
training image in an epoch — forwards that build a graph, forwards without one, and backwards. This is the work a
faster kernel cannot remove; a method's CPU cost relative to CE cannot fall much below its pass count relative to
CE's (one forward and one backward per image) unless the passes themselves get cheaper for it alone.

    python benchmarks/classifier_passes.py [--epochs 2] [--runs ce metalabelnet ...] [--ablation] [--repeats 2]
                                           [--out-dir benchmarks/results]

Counted: a torch dispatch mode counts the images entering the classifier's first convolution (its forward,
`aten.convolution`, split by whether autograd was recording, and its backward, `aten.convolution_backward`) during
each epoch's batch loop and the method's own epoch work (DivideMix's division, mixture refits) — not during the
validation/test accuracy or the label-free selection pool. An exact variant's second-order backward runs
convolutions without recording; they land in the middle column. Networks that are not the classifier (CLID-MU's
VRI rectifier, MW-Net's weighting net, MetaLabelNet's generator) have no convolution and are not counted. Every run
uses the project's params.yaml on digits sym-40 (seed 0) at the run's stage-two overrides, as `benchmarks/results.py`
does; `--ablation` adds the rows of its `meta_ablation` table (the cheaper settings tried). Counts are
deterministic: one run per method is enough. `--repeats N` also times every run as results.py's cost table does
(its own process, one thread, process CPU time per epoch, N repeats in rotated order).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import results  # noqa: E402  (benchmarks/results.py: the runs and the workspace)

ROOT = Path(__file__).resolve().parents[1]
RUNS = {**results.RUNS, **results.ACCURACY_TABLES["meta_ablation"]}  # name -> (method, stage2 overrides)
DEFAULT_RUNS = ("ce", "metalabelnet", "metalabelnet-exact", "mwnet", "mwnet-exact", "clidmu", "clidmu-exact",
                "clidmu-vri", "clidmu-vri-exact", "dividemix", "ido")


class FirstConvCounter(TorchDispatchMode):
    """Counts images through convolutions whose weight takes `channels` input channels (the first layer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.active = False
        self.counts = {"forward_graph": 0, "forward_no_graph": 0, "backward": 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.active:
            if func is torch.ops.aten.convolution.default and args[1].shape[1] == self.channels:
                key = "forward_graph" if torch.is_grad_enabled() else "forward_no_graph"
                self.counts[key] += args[0].shape[0]
            elif func is torch.ops.aten.convolution_backward.default and args[2].shape[1] == self.channels:
                self.counts["backward"] += args[0].shape[0]
        return func(*args, **kwargs)


@contextlib.contextmanager
def counting_training(counter: FirstConvCounter, method_cls: type):
    """Counter on inside the batch loop and the method's epoch work, off for the loop's accuracy evaluations."""
    from components.training import loop

    def switch(fn, on: bool, *, after: bool | None = None):
        def wrapper(*args, **kwargs):
            counter.active = on
            try:
                return fn(*args, **kwargs)
            finally:
                if after is not None:
                    counter.active = after
        return wrapper

    hooks = ((method_cls, "batch_loss", True, None), (method_cls, "on_epoch_end", True, False),
             (loop, "accuracy", False, None))
    saved = [(owner, name, vars(owner).get(name)) for owner, name, _, _ in hooks]  # None: inherited
    for owner, name, on, after in hooks:
        setattr(owner, name, switch(getattr(owner, name), on, after=after))
    try:
        yield
    finally:
        for owner, name, original in saved:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        counter.active = False


def count(run: str, channels: int) -> dict[str, int]:
    from components.methods import get_method
    from components.stages import stage2

    method, overrides = RUNS[run]
    counter = FirstConvCounter(channels)
    folder = Path("outputs/passes") / run
    with counting_training(counter, get_method(method)), counter, contextlib.redirect_stdout(io.StringIO()):
        stage2.main(["--method", method, "--seed", "0", "--out", str(folder), *results.set_args(overrides)])
    shutil.rmtree(folder, ignore_errors=True)
    return counter.counts


def render(doc: dict) -> str:
    """The table: per run, images through the classifier per training image and epoch, and CPU time × CE."""
    m = doc["machine"]
    lines = [
        f"# Classifier passes per training image ({doc['started'][:10]}, digits sym-40, seed 0, torch threads 1)",
        "",
        f"Commit `{doc['commit'][:10]}`{' (uncommitted changes)' if doc['dirty'] else ''}, `{doc['command']}` on "
        f"{m['cores']} × {m['cpu']}. Images entering the classifier's first convolution per training image in a "
        f"stage-two epoch ({doc['epochs']} epochs counted; CE trains {doc['train_images']} images per epoch): "
        "forwards with autograd recording, forwards without (an exact variant's second-order backward lands here "
        "too) and backwards; all / CE's = their sum over CE's (one forward, one backward). The VRI rectifier, the "
        "weighting net and the soft-label generator have no convolution and are not counted. "
        + (f"CPU × CE: process CPU time per stage-two epoch over CE's, {doc['cost_epochs']} epochs, each repeat in "
           "its own process with the runs in rotated order (`benchmarks/results.py`'s cost method)."
           if doc["cost_epochs"] else "CPU × CE: not timed in this run."),
        "",
        "| run | forward (recording) | forward (no graph) | backward | all / CE's | CPU × CE |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for run, r in doc["rows"].items():
        timed = " / ".join(f"{x:.2f}" for x in r["cpu_ratio_to_ce"]) or "—"
        lines.append(f"| {run} | {r['forward_graph']:.2f} | {r['forward_no_graph']:.2f} | {r['backward']:.2f} "
                     f"| {r['passes_vs_ce']:.2f} | {timed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="stage-two epochs per counted run (counts are per epoch)")
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), choices=list(results.RUNS),
                        help="runs as benchmarks/results.py names them (CE always runs first: it is the unit)")
    parser.add_argument("--ablation", action="store_true", help="add results.py's meta_ablation rows")
    parser.add_argument("--repeats", type=int, default=0, help="time the runs too, this many repeats (0: counts only)")
    parser.add_argument("--cost-epochs", type=int, default=6, help="stage-two epochs of each timed run")
    parser.add_argument("--out-dir", type=Path, help="write classifier_passes.md/.json here (e.g. benchmarks/results)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir.resolve() if args.out_dir else None  # before the runs move into their workspace
    runs = ["ce", *(r for r in args.runs if r != "ce")]
    if args.ablation:
        runs += list(results.ACCURACY_TABLES["meta_ablation"])
    torch.set_num_threads(1)
    command = " ".join(["python benchmarks/classifier_passes.py", *(argv if argv is not None else sys.argv[1:])])
    doc = {"commit": results.git("rev-parse", "HEAD"),
           "dirty": bool(results.git("status", "--porcelain", "--untracked-files=no")),
           "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
           "machine": results.machine(), "epochs": args.epochs,
           "cost_epochs": args.cost_epochs if args.repeats else None, "rows": {}}
    ws = results.prepare("sym-40", 0, args.epochs, "passes")
    try:
        channels = json.loads(Path("data/prepared/manifest.json").read_text())["input_shape"][0]
        counts = {run: count(run, channels) for run in runs}
    finally:
        os.chdir(ROOT)
        shutil.rmtree(ws, ignore_errors=True)
    ratios: dict[str, list[float]] = {run: [] for run in runs}
    if args.repeats:
        for row in results.cost_runs({run: RUNS[run] for run in runs}, args.cost_epochs, args.repeats):
            ratios[row["method"]].append(row["cpu_ratio_to_ce"])
    ce = counts["ce"]
    unit = ce["forward_graph"]  # CE: one forward with a graph per training image and epoch
    doc["train_images"] = unit // args.epochs
    for run, c in counts.items():
        doc["rows"][run] = {**{k: c[k] / unit for k in ("forward_graph", "forward_no_graph", "backward")},
                            "passes_vs_ce": sum(c.values()) / sum(ce.values()), "cpu_ratio_to_ce": ratios[run]}
    text = render(doc)
    if out_dir is not None:
        from components.io import write_json, write_text

        write_json(out_dir / "classifier_passes.json", doc)
        write_text(out_dir / "classifier_passes.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
