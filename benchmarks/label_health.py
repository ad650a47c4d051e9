"""How close is the label-health estimate to the truth? Digits, four noise settings × 3 seeds, the shipped params.

    python benchmarks/label_health.py                 # about 10 min on 2 cores (one process, one torch thread)
    python benchmarks/label_health.py --seeds 0 --settings sym-40   # a quick look
    python benchmarks/label_health.py --settings sym-40 pair-40 --seeds 0 1 --methods ido ce gce sce elr coteaching \
        dividemix mwnet metalabelnet clidmu       # which model's probabilities to read: label_health_methods.md

For each (setting, seed), a fresh workspace runs data, noise and stage one (benchmarks/results.py `prepare`: seed s
sets noise.seed, stage1.seed and stage2.seed), then stage two and evaluate as the pipeline does (stage2.method from
params.yaml, IDO by default). The table compares eval.json's `estimated_noise_rate` (confident learning on the
selected model's training-set probabilities; components/evaluation/health.py) with `actual_noise_rate`. Beside
it, the same estimate from stage one's last-epoch model (cross-entropy on the noisy labels, which fits them): what
the estimate would be from a model that learned the noise. Writes benchmarks/results/label_health.md and .json.
With --methods, every method's estimate from its selected and from its last-epoch model (label_health_methods).
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from results import SETTINGS, git, machine, prepare  # noqa: E402

SEEDS = (0, 1, 2)


def estimate_from(model_path: Path) -> tuple[float, float]:
    """(the estimate from a model's training-set probabilities, the share of training rows whose predicted class is
    the given label) in the current workspace."""
    import numpy as np
    import torch

    from components import paths
    from components.evaluation.health import estimate_joint, noise_rate
    from components.models import load_model_checkpoint
    from components.models.classifier import PIXEL_MAX
    from components.stages.common import load_prepared, read_npz
    from components.training.loop import predict_logits
    from components.training.streamed import StreamedRows

    arrays = load_prepared()
    store, tr = arrays["X"], arrays["train_idx"]
    given = read_npz(paths.NOISY_NPZ, ("y_noisy",))["y_noisy"][tr]
    model, _ = load_model_checkpoint(model_path)
    scale = PIXEL_MAX if store.dtype == np.uint8 and store.ndim != 4 else None
    probs = torch.softmax(predict_logits(model, StreamedRows(store, tr, torch.device("cpu"), scale=scale)), 1).numpy()
    return noise_rate(estimate_joint(probs, given)), float((probs.argmax(1) == given).mean())


def one_group(setting: str, seed: int, methods: list[str | None]) -> list[dict]:
    """Stage two and evaluate of each method (None: params.yaml's) on one fresh (setting, seed) workspace."""
    from components import paths
    from components.paths import Stage2Outputs
    from components.stages import evaluate, stage2

    ws = prepare(setting, seed, None, f"health-{setting}-s{seed}")
    rows = []
    try:
        ce_last = estimate_from(paths.LAST_MODEL)[0]
        for method in methods:
            start = time.process_time()
            folder = Path("outputs/health") / (method or "default")
            with contextlib.redirect_stdout(io.StringIO()):
                stage2.main(["--seed", str(seed), "--out", str(folder), *(["--method", method] if method else [])])
                evaluate.main(["--run", str(folder)])
            ev = json.loads((folder / "eval.json").read_text())
            health = ev["label_health"]
            low, high = health["estimated_noise_rate_interval"]
            rows.append({"setting": setting, "seed": seed, "method": ev["method"],
                         "actual_noise_rate": ev["actual_noise_rate"], "estimated_noise_rate": ev["estimated_noise_rate"],
                         "interval": [low, high], "error": ev["estimated_noise_rate"] - ev["actual_noise_rate"],
                         "covered": low <= ev["actual_noise_rate"] <= high,
                         "top_confusion": health["top_confusions"][0] if health["top_confusions"] else None,
                         "test_acc_selected": ev["test_acc_selected"], "selected_epoch": ev["selected_epoch"],
                         "last_epoch_estimate": estimate_from(Stage2Outputs.inside(folder).model_last)[0],
                         "agrees_with_given": estimate_from(Stage2Outputs.inside(folder).model_selected)[1],
                         "ce_last_estimate": ce_last, "cpu_seconds": time.process_time() - start})
    finally:
        os.chdir(ROOT)
        shutil.rmtree(ws, ignore_errors=True)
    return rows


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def render(doc: dict) -> str:
    """The per-seed table and the summary for the first method; with several methods, a table by method."""
    rows, m = doc["rows"], doc["machine"]
    first = [r for r in rows if r["method"] == rows[0]["method"]]
    lines = [
        f"# Label health on digits: estimated vs actual noise rate ({doc['started'][:10]}, {first[0]['method']} at "
        f"the shipped params, seeds {doc['seeds']}, torch threads 1)",
        "",
        f"Commit `{doc['commit'][:10]}`{' (uncommitted changes)' if doc['dirty'] else ''}, `{doc['command']}` on "
        f"{m['cores']} × {m['cpu']}. Seed s sets noise.seed, stage1.seed and stage2.seed (data.seed 0). Estimated: "
        "eval.json's `estimated_noise_rate`, confident learning (Northcutt et al., JAIR 2021) on the selected "
        "stage-two model's training-set probabilities; interval: 95 % bootstrap over training rows. CE last epoch: the "
        "same estimate from stage one's last-epoch model (cross-entropy on the noisy labels, fitted to them), for contrast.",
        "",
        "| setting | seed | actual (%) | estimated (%) | 95 % interval (%) | error (points) | CE last epoch (%) "
        "| most confused (given → true, share) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in first:
        top = r["top_confusion"]
        pair = f"{top['given']} → {top['true']}, {pct(top['share'])} %" if top else "—"
        lines.append(f"| {r['setting']} | {r['seed']} | {pct(r['actual_noise_rate'])} | {pct(r['estimated_noise_rate'])} "
                     f"| {pct(r['interval'][0])} – {pct(r['interval'][1])} | {100 * r['error']:+.2f} "
                     f"| {pct(r['ce_last_estimate'])} | {pair} |")
    lines += ["", "| setting | mean absolute error (points) | worst (points) | truth inside the interval "
              "| CE last epoch: mean absolute error (points) |", "|---|---:|---:|---:|---:|"]
    for setting in dict.fromkeys(r["setting"] for r in first):
        lines.append(summary_row(setting, [r for r in first if r["setting"] == setting]))
    lines.append(summary_row("all", first))
    if len(first) < len(rows):
        lines += ["", "Every method: mean absolute error (points) of the estimate from its selected model (what "
                  "eval.json reports) and from its last epoch, and how far its selected model's predictions agree "
                  "with the given labels beyond the clean share (points; > 0: it fits some noise).", "",
                  "| method | mean abs. error, selected | mean abs. error, last epoch | worst, selected "
                  "| fits noise, selected |", "|---|---:|---:|---:|---:|"]
        for method in dict.fromkeys(r["method"] for r in rows):
            some = [r for r in rows if r["method"] == method]
            fits = statistics.fmean(r["agrees_with_given"] - (1 - r["actual_noise_rate"]) for r in some)
            lines.append(f"| {method} | {mae(some, 'estimated_noise_rate')} | {mae(some, 'last_epoch_estimate')} "
                         f"| {100 * max(abs(r['error']) for r in some):.2f} | {100 * fits:+.2f} |")
    return "\n".join(lines) + "\n"


def mae(rows: list[dict], key: str) -> str:
    return f"{100 * statistics.fmean(abs(r[key] - r['actual_noise_rate']) for r in rows):.2f}"


def summary_row(name: str, rows: list[dict]) -> str:
    errors = [abs(r["error"]) for r in rows]
    return (f"| {name} | {100 * statistics.fmean(errors):.2f} | {100 * max(errors):.2f} "
            f"| {sum(r['covered'] for r in rows)} of {len(rows)} | {mae(rows, 'ce_last_estimate')} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["sym-40", "sym-60", "pair-40",
                                                                                   "instance-40"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", help="stage-two methods to compare (default: params.yaml's only)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", help="file name without suffix (default label_health, or label_health_methods)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    doc = {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
           "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(["python benchmarks/label_health.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine(), "seeds": args.seeds, "rows": []}
    for setting in args.settings:
        for seed in args.seeds:
            for row in one_group(setting, seed, args.methods or [None]):
                doc["rows"].append(row)
                print(f"{setting} seed {seed} {row['method']}: actual {pct(row['actual_noise_rate'])} %, estimated "
                      f"{pct(row['estimated_noise_rate'])} % ({100 * row['error']:+.2f} points)", file=sys.stderr,
                      flush=True)
    from components.io import write_json, write_text

    name = args.name or ("label_health_methods" if args.methods else "label_health")
    write_json(args.out_dir / f"{name}.json", doc)
    write_text(args.out_dir / f"{name}.md", render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
