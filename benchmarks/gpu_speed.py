"""Training speed of CE with PreAct-ResNet-18 on CIFAR-size data: fp32 vs bf16 vs + channels-last vs + compile.

Random uint8 images (default 50,000 × 3 × 32 × 32, 10 classes, batch 512) sit on the device as real data
does. Each variant trains a fresh network through the pipeline's own code path — `train_epochs` with the
`ce` method's `batch_loss`, weak view = random crop with padding 4 + horizontal flip, AdamW as in the stages,
`seed_everything` (deterministic algorithms) unless --nondeterministic — and reports the steady-state
seconds per epoch (mean over the epochs after the first; the first, with compilation and autotuning, is
shown apart), training images per second, and the speed-up over fp32 measured in the same run.

On the CPU every GPU option is a no-op, so all variants run the same fp32 code: a CPU run is a smoke check
of the code path, not a measurement of the variants. Goal on one H100: ≤ 2 s per epoch of 50k images.

Usage:
    python benchmarks/gpu_speed.py [--n 50000] [--batch-size 512] [--epochs 3] [--n-eval 10000]
        [--variants fp32,bf16,bf16_cl,bf16_cl_compile] [--arch preact_resnet18] [--width 64]
        [--device auto] [--threads 0] [--nondeterministic] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import platform
from pathlib import Path

import numpy as np
import torch

from components.config import AugmentParams, ModelParams, Params, RuntimeParams
from components.io import atomic_path
from components.methods import get_method
from components.methods.base import MethodContext
from components.models.build import architecture, build_model
from components.training.loop import TensorSplits, pick_device, train_epochs
from components.training.runtime import resolve_runtime
from components.training.setup import make_augmenter, seed_everything

VARIANTS = {
    "fp32": {"amp": "off", "channels_last": False, "compile": False},
    "bf16": {"amp": "bf16", "channels_last": False, "compile": False},
    "bf16_cl": {"amp": "bf16", "channels_last": True, "compile": False},
    "bf16_cl_compile": {"amp": "bf16", "channels_last": True, "compile": True},
}
N_CLASSES = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="training images")
    parser.add_argument("--n-eval", type=int, default=10_000, help="validation and test images each (evaluated every epoch)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3, help="the first is reported apart (compilation, autotuning)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--arch", default="preact_resnet18")
    parser.add_argument("--width", type=int, default=None, help="first-stage channels (default: the arch's standard)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="no deterministic algorithms, cuDNN autotuning on (the pipeline itself is deterministic)")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.n < 4 or args.n_eval < 1 or args.batch_size < 2 or args.epochs < 1:
        parser.error("need --n ≥ 4, --n-eval ≥ 1, --batch-size ≥ 2, --epochs ≥ 1")
    return args


def random_splits(n: int, n_eval: int, device: torch.device) -> TensorSplits:
    """CIFAR-shaped uint8 images and labels, generated on the device."""
    gen = torch.Generator(device=device).manual_seed(0)

    def images(count: int) -> torch.Tensor:
        return torch.randint(0, 256, (count, 3, 32, 32), generator=gen, device=device, dtype=torch.uint8)

    def labels(count: int) -> torch.Tensor:
        return torch.randint(0, N_CLASSES, (count,), generator=gen, device=device)

    return TensorSplits(images(n), labels(n), images(n_eval), labels(n_eval), images(n_eval), labels(n_eval), N_CLASSES)


def run_variant(name: str, args: argparse.Namespace, splits: TensorSplits, device: torch.device) -> dict:
    """Train a fresh network for args.epochs epochs under one variant's runtime settings."""
    runtime = resolve_runtime(RuntimeParams(device="auto", **VARIANTS[name]), device)
    seed_everything(0)
    if args.nondeterministic:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
    arch = architecture(ModelParams(arch=args.arch, width=args.width), (3, 32, 32), N_CLASSES)
    model = runtime.prepare(build_model(arch).to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    augment = make_augmenter(AugmentParams(crop_padding=4, flip=True, noise_std=0.0), splits, seed=0)
    ctx = MethodContext(model=model, splits=splits, augment=augment, params=Params(),
                        wrong_events=np.zeros(len(splits.y_train), dtype=np.int64), device=device, optimizer=optimizer)
    method = get_method("ce")(ctx)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = train_epochs(model, splits, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                        scheduler=None, batch_loss=method.batch_loss, seed=0, label=f"gpu_speed/{name}", runtime=runtime)
    steady = rows[1:] or rows
    train_s = float(np.mean([r["train_seconds"] for r in steady]))
    result = {
        "variant": name,
        "amp": str(runtime.amp_dtype).removeprefix("torch.") if runtime.amp_dtype else "fp32",
        "channels_last": runtime.channels_last,
        "compiled": runtime.compile,
        "first_epoch_s": rows[0]["train_seconds"],
        "train_s": train_s,
        "epoch_s": float(np.mean([r["seconds"] for r in steady])),
        "images_per_s": len(splits.y_train) / train_s,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "final_loss": rows[-1]["loss"],
    }
    del model, optimizer, method, ctx
    gc.collect()
    if runtime.compile:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def markdown(results: list[dict], args: argparse.Namespace, device: torch.device) -> str:
    """The results table with the run's settings above it."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    base = next((r for r in results if r["variant"] == "fp32"), results[0])
    lines = [
        f"# Training speed: CE, {args.arch}, {args.n:,} × 3 × 32 × 32 uint8 images, batch {args.batch_size}",
        "",
        f"{dt.date.today().isoformat()}, {name}, torch {torch.__version__}; {args.epochs} epoch(s) per variant, "
        f"steady state = mean of the epochs after the first; {args.n_eval:,} validation + {args.n_eval:,} test images "
        f"evaluated every epoch; {'nondeterministic, cuDNN autotuning' if args.nondeterministic else 'deterministic algorithms (as the pipeline)'}."
        + (" On the CPU every GPU option is a no-op: the rows differ only by noise." if device.type != "cuda" else ""),
        "",
        f"| variant | autocast | channels-last | compiled | first epoch (s) | train s / epoch | epoch s incl. eval "
        f"| images / s | speed-up vs {base['variant']} | peak GPU memory (GiB) |",
        "| :--- | :--- | :---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        peak = "—" if np.isnan(r["peak_gib"]) else f"{r['peak_gib']:.2f}"
        lines.append(
            f"| {r['variant']} | {r['amp']} | {'yes' if r['channels_last'] else 'no'} | {'yes' if r['compiled'] else 'no'} "
            f"| {r['first_epoch_s']:.2f} | {r['train_s']:.3f} | {r['epoch_s']:.3f} | {r['images_per_s']:,.0f} "
            f"| {base['train_s'] / r['train_s']:.2f} | {peak} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    device = pick_device(RuntimeParams(device=args.device, threads=args.threads))
    splits = random_splits(args.n, args.n_eval, device)
    results = [run_variant(name, args, splits, device) for name in args.variants.split(",")]
    table = markdown(results, args, device)
    print(table)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            tmp.write_text(table)
        print(f"written to {args.out}")
    return table


if __name__ == "__main__":
    main()
