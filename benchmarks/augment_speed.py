"""Strong-view cost per 50k 32×32 RGB uint8 images on the CPU: the basic strong view vs RandAugment.

Both views run through `Augmenter.strong` with the CIFAR recipe's geometry (pad 4, reflect, flip) in batches,
interleaved repetition by repetition so that load on the (shared) machine hits both alike; the table gives
the median CPU time (process_time: all threads) and wall time per 50k images. `--pil` adds the official
per-image PIL RandAugmentMC's op calls (one image at a time, as a data-loader worker runs them) for scale.

    python benchmarks/augment_speed.py [--images 50000] [--batch 128] [--repeats 3] [--threads 1] [--pil]
                                       [--device cuda]   # the same views on a GPU (synchronised timings)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from components.config import AugmentParams
from components.training.augment import Augmenter

BASE = {"crop_padding": 4, "pad_mode": "reflect", "flip": True}
VIEWS = {
    "basic (jitter 0.4, cutout 0.5, noise 0.15)": AugmentParams(**BASE, strong="basic", color_jitter=0.4, cutout=0.5),
    "randaugment (n 2, m 10, grey cutout 16 px)": AugmentParams(**BASE, strong="randaugment"),
}
PER = 50_000


def run_view(cfg: AugmentParams, x: torch.Tensor, batch: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for one pass over x in batches (on x's device, synchronised)."""
    aug = Augmenter(cfg, seed=0, device=x.device)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(x), batch):
        aug.strong(x[start:start + batch])
    sync()
    return time.process_time() - cpu, time.perf_counter() - wall


def run_pil(x: torch.Tensor) -> tuple[float, float]:
    """The official per-image loop: 2 ops from the pool, each with p = 0.5 at a level in [1, 10), then cutout."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageOps

    def enhance(kind):
        return lambda im, v: getattr(ImageEnhance, kind)(im).enhance(v * 0.09 + 0.05)

    def affine(a):
        return lambda im, v: im.transform(im.size, Image.AFFINE, a(v * 0.03 * random.choice((-1, 1)), im))

    pool = [lambda im, v: ImageOps.autocontrast(im), enhance("Brightness"), enhance("Color"), enhance("Contrast"),
            lambda im, v: ImageOps.equalize(im), lambda im, v: im, lambda im, v: ImageOps.posterize(im, int(v * 0.4) + 4),
            lambda im, v: im.rotate(int(v * 3) * random.choice((-1, 1))), enhance("Sharpness"),
            affine(lambda s, im: (1, s, 0, 0, 1, 0)), affine(lambda s, im: (1, 0, 0, s, 1, 0)),
            lambda im, v: ImageOps.solarize(im, 256 - int(v * 25.6)),
            affine(lambda s, im: (1, 0, int(s * im.size[0]), 0, 1, 0)),
            affine(lambda s, im: (1, 0, 0, 0, 1, int(s * im.size[1])))]
    images = [Image.fromarray(t.permute(1, 2, 0).numpy()) for t in x]
    cpu, wall = time.process_time(), time.perf_counter()
    for im in images:
        for op in random.choices(pool, k=2):
            v = random.randint(1, 9)
            if random.random() < 0.5:
                im = op(im, v)
        x0, y0 = int(max(0, random.uniform(0, 32) - 8)), int(max(0, random.uniform(0, 32) - 8))
        im = im.copy()
        ImageDraw.Draw(im).rectangle((x0, y0, min(32, x0 + 16), min(32, y0 + 16)), (127, 127, 127))
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=PER)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pil", action="store_true", help="add the official per-image PIL loop (needs Pillow)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    on_device = x.to(args.device)
    runs = {name: lambda cfg=cfg: run_view(cfg, on_device, args.batch) for name, cfg in VIEWS.items()}
    if args.pil:
        runs["official PIL RandAugmentMC, per image (CPU)"] = lambda: run_pil(x)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved
        for name, fn in runs.items():
            times[name].append(fn())
    scale = PER / args.images
    print(f"torch {torch.__version__}, {args.device}, {args.threads} thread(s), batch {args.batch}, {args.images} images, "
          f"median of {args.repeats} interleaved repeats, per 50k images")
    print("| strong view | CPU s / 50k | wall s / 50k |")
    print("|---|---:|---:|")
    for name, values in times.items():
        cpu = statistics.median(v[0] for v in values) * scale
        wall = statistics.median(v[1] for v in values) * scale
        print(f"| {name} | {cpu:.2f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
