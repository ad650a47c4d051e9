"""The GPU check behind benchmarks/gpu_check.sh: one table of what issue 11 asks a GPU to show.

1. CE epoch seconds, PreAct-ResNet-18 on 50,000 random CIFAR-shaped uint8 images (batch 512), bf16 autocast +
   channels-last, without and with torch.compile: `gpu_speed.run_variant`, the pipeline's own training loop.
   Goal: ≤ 2 s per epoch on one H100/H200.
2. Stage-two seconds per epoch of CE, IDO, DivideMix, Co-teaching and the meta-learners (MetaLabelNet, CLID-MU
   on both hosts, MW-Net) at their defaults and with the exact meta-gradient (`-exact`), and their ratio to CE, with each run's peak GPU memory: lnlflow's data, noise, stage1 and stage2 stages run in-process
   in a temporary workspace on a synthetic CIFAR-10 set in the official python format (the real loader and
   split: 45,000 training, 5,000 trusted validation, 10,000 test images). Epoch cost = the batch loop + the
   method's per-epoch work (GMM co-divide, BMM refit), the median over the epochs after the first (2 epochs: the
   second; the first holds allocations and warm-up).

Only components.* is imported (no DVC, MLflow or Prefect): the GPU machine has torch, numpy, scipy and PyYAML;
pydantic and ruamel.yaml come as wheels (see gpu_check.sh). `--smoke` shrinks everything for a CPU run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT, ROOT / "benchmarks"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from results import META_LEARNERS, RUNS  # noqa: E402  (every method, CLID-MU's VRI host, each meta-learner's -exact)

METHODS = tuple(RUNS)
META_GOAL = "≤ 2× (default), within 1 point of `-exact`"
GOALS = {"ce": "1.00", "ido": "≤ 1.15× a two-view CE (≈ 2.3× this one-view CE)", "dividemix": "≤ 3×",
         "coteaching": "≤ 2.2×"}
TARGETS = {  # per epoch relative to this CE: the project's goals (docs/methods/meta_step.md)
    name: GOALS.get(name) or (META_GOAL if method in META_LEARNERS and not name.endswith("-exact") else "—")
    for name, (method, _) in RUNS.items()
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code path, measures nothing")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--part", choices=("all", "ce", "methods"), default="all",
                        help="all = each part in its own process (compile state and memory peaks stay apart)")
    parser.add_argument("--json", type=Path, help="--part ce/methods: write the results here")
    args = parser.parse_args(argv)
    args.methods = args.methods.split(",")
    if unknown := [m for m in args.methods if m not in METHODS]:
        parser.error(f"unknown method(s) {', '.join(unknown)}")
    big = not args.smoke
    args.device = "auto" if big else "cpu"
    args.n, args.n_test = (50_000, 10_000) if big else (120, 20)
    args.ce_batch, args.ce_epochs, args.width = (512, 3, None) if big else (64, 2, 8)
    args.batch, args.stage2_epochs = (128, 2) if big else (32, 2)
    return args


# --- 1. CE speed -----------------------------------------------------------------------------------------

def ce_speed(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """gpu_speed's bf16 + channels-last variants, without and with torch.compile."""
    import gpu_speed

    speed_args = gpu_speed.parse_args(["--n", str(args.n), "--n-eval", str(args.n_test), "--batch-size", str(args.ce_batch),
                                       "--epochs", str(args.ce_epochs), "--device", args.device]
                                      + (["--width", str(args.width)] if args.smoke else []))
    splits = gpu_speed.random_splits(args.n, args.n_test, device)
    results = []
    for variant in ("bf16_cl", "bf16_cl_compile"):
        started = time.perf_counter()
        results.append(gpu_speed.run_variant(variant, speed_args, splits, device))
        print(f"[gpu_check] CE {variant}: {results[-1]['train_s']:.2f} s/epoch ({time.perf_counter() - started:.0f} s)", flush=True)
    del splits
    gc.collect()
    return results


# --- 2. stage two per method -----------------------------------------------------------------------------

def write_cifar10(root: Path, n_train: int, n_test: int) -> None:
    """cifar-10-batches-py/ with random pixels and labels in the official pickle layout."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, count: int) -> None:
        batch = {b"labels": rng.integers(0, 10, count).tolist(), b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))

    for i, count in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        dump(f"data_batch_{i}", len(count))
    dump("test_batch", n_test)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{c}".encode() for c in range(10)]}, protocol=4))


def params_for(args: argparse.Namespace, root: Path, on_gpu: bool) -> dict:
    """The shipped params.yaml with the benchmark's data, model, runtime and sizes."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="cifar10", root=str(root), val_fraction=0.1)
    params["noise"].update(kind="symmetric_exclusive", rate=0.4)
    params["model"].update(arch="preact_resnet18", width=args.width)
    params["augment"].update(crop_padding=4, pad_mode="reflect", flip=True, noise_std=0.0)
    params["runtime"].update(device="cuda" if on_gpu else "cpu", amp="bf16" if on_gpu else "off",
                             channels_last=True, compile=False, checkpoint_every=0)
    params["stage1"].update(epochs=2, batch_size=args.batch)
    params["stage2"].update(epochs=args.stage2_epochs, batch_size=args.batch)
    if args.smoke:  # one thread: two busy-waiting threads on a shared 2-core machine ran 10-20× slower
        params["runtime"]["threads"] = 1
        params["stage2"].setdefault("meta", {})["meta_batch_size"] = 8
        params["stage2"].setdefault("clidmu", {})["meta_set_size"] = 32
        params["stage2"]["selection"]["pool_size"] = 32
    return params


def epoch_cost(log: Path) -> float:
    """Median over epochs after the first of (batch loop + the method's per-epoch work), in seconds."""
    lines = log.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    costs = [float(r["train_seconds"]) + float(r.get("method_seconds") or 0.0) for r in rows]
    return statistics.median(costs[1:] or costs)


def stage_two(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Cached stage one, then each method's stage two; seconds per epoch, ratio to CE and peak memory."""
    from components.stages import data, noise, stage1, stage2
    from components.stages.common import run_stage

    on_gpu = device.type == "cuda"
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        write_cifar10(work / "cifar", args.n, args.n_test)
        (work / "params.yaml").write_text(yaml.safe_dump(params_for(args, work / "cifar", on_gpu), sort_keys=False))
        home = os.getcwd()
        os.chdir(work)
        try:
            for name, module in (("data", data), ("noise", noise), ("stage1", stage1)):
                if run_stage(name, module.main):
                    raise SystemExit(f"gpu_check: lnlflow {name} failed")
            for name in args.methods:
                method, overrides = RUNS[name]
                sets = sum((["--set", f"{k}={json.dumps(v)}"] for k, v in overrides.items()), [])
                if on_gpu:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                started = time.perf_counter()
                folder = work / "outputs" / "check" / name
                if run_stage("stage2", lambda: stage2.main(["--method", method, "--out", str(folder), *sets])):
                    raise SystemExit(f"gpu_check: lnlflow stage2 --method {method} {' '.join(sets)} failed")
                peak = torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu else float("nan")
                results.append({"method": name, "epoch_s": epoch_cost(folder / "log.tsv"), "peak_gib": peak})
                print(f"[gpu_check] stage2 {name}: {results[-1]['epoch_s']:.2f} s/epoch, peak {peak:.2f} GiB "
                      f"({time.perf_counter() - started:.0f} s with setup)", flush=True)
                gc.collect()
        finally:
            os.chdir(home)
    ce = next((r["epoch_s"] for r in results if r["method"] == "ce"), None)
    for r in results:
        r["ratio"] = r["epoch_s"] / ce if ce else float("nan")
    return results


# --- report ----------------------------------------------------------------------------------------------

def table(args: argparse.Namespace, device: torch.device, ce: list[dict], methods: list[dict], seconds: float) -> str:
    gib = lambda v: "—" if v != v else f"{v:.2f}"  # noqa: E731  (NaN on the CPU)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()}), SMOKE: sizes too small to measure"
    n_train = args.n - round(args.n * 0.1)
    lines = [
        f"# lnlflow GPU check — {name}, torch {torch.__version__}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s",
        "",
        f"## CE epoch, PreAct-ResNet-18{f' (width {args.width})' if args.width else ''}, {args.n:,} random 3×32×32 uint8 "
        f"images, batch {args.ce_batch}, {args.ce_epochs} epochs (steady = mean after the first)",
        "",
        "| variant | first epoch (s) | s / epoch | goal | images / s | peak GPU memory (GiB) |",
        "| :--- | ---: | ---: | :--- | ---: | ---: |",
    ]
    for r in ce:
        label = f"{r['amp']}{' + channels-last' if r['channels_last'] else ''}{' + torch.compile' if r['compiled'] else ''}"
        label += "" if device.type == "cuda" else f" (asked: {r['variant']}; no-op on the CPU)"
        verdict = "" if device.type != "cuda" else (" ✓" if r["train_s"] <= 2.0 else " ✗")
        lines.append(f"| {label} | {r['first_epoch_s']:.2f} | {r['train_s']:.2f} | ≤ 2 s{verdict} | {r['images_per_s']:,.0f} | {gib(r['peak_gib'])} |")
    lines += [
        "",
        f"## Stage two per method: lnlflow stages, ≈ {n_train:,} training images (sym-40 noise), batch {args.batch}, "
        f"{args.stage2_epochs} epochs, {'bf16 + channels-last' if device.type == 'cuda' else 'fp32'}, eager; every method at its defaults, `-exact` = "
        "`meta.grad: cheap_exact`, full scope, every step; "
        "s / epoch = batch loop + method work, median after epoch 1",
        "",
        "| run | s / epoch | × CE | goal | peak GPU memory (GiB) |",
        "| :--- | ---: | ---: | :--- | ---: |",
    ]
    for r in methods:
        lines.append(f"| {r['method']} | {r['epoch_s']:.2f} | {r['ratio']:.2f} | {TARGETS[r['method']]} | {gib(r['peak_gib'])} |")
    return "\n".join(lines) + "\n"


def run_part(part: str, argv: list[str]) -> list[dict]:
    """One part in a fresh interpreter (a compiled model's state slowed the later eager runs in-process)."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_part_") as tmp:
        out = Path(tmp) / "part.json"
        subprocess.run([sys.executable, __file__, *argv, "--part", part, "--json", str(out)], check=True)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    from components.config import RuntimeParams
    from components.training.loop import pick_device

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    device = pick_device(RuntimeParams(device=args.device, threads=1 if args.smoke else 0))
    if not args.smoke and device.type != "cuda":
        raise SystemExit("gpu_check: no CUDA device here; use --smoke for the CPU code-path check")
    if args.part != "all":
        results = ce_speed(args, device) if args.part == "ce" else stage_two(args, device)
        args.json.write_text(json.dumps(results))
        return
    forwarded = [a for a in argv if not a.startswith("--out") and a != str(args.out)]
    ce, methods = run_part("ce", forwarded), run_part("methods", forwarded)
    text = table(args, device, ce, methods, time.perf_counter() - started)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
