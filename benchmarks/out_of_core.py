"""Data larger than memory: peak memory, throughput and disk of the pipeline on N synthetic 3×32×32 images.

For each N a folder with X.npy / y.npy (the `npy` source: memory-mapped) is written chunk by chunk, then every
stage runs as its own process (`python -m components.stages.<stage>`): data, noise, then stage one and stage
two (two epochs each, MLP, CE) with runtime.data_on_device `never` (batches streamed from the store) and
`always` (every split read into memory), in alternating order over `--repeats` rounds, then evaluate. Per
stage the parent samples /proc/<pid>/status every 20 ms: peak RssAnon (private, anonymous memory — what the
process itself holds; pages of memory-mapped files are the kernel's page cache and are not counted) and peak
VmRSS (everything resident). Throughput = training images / second of the epoch's batch loop (train_seconds
of the stage log), with the process CPU time beside the wall time; ratio = streamed / in memory, per round.

Usage:
    python benchmarks/out_of_core.py [--sizes 100000 300000 600000] [--repeats 2] [--threads 0]
        [--work /tmp/lnlflow-ooc] [--out benchmarks/results/out_of_core.md]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_source(folder: Path, n: int, *, seed: int = 0, chunk: int = 20_000) -> None:
    """X.npy (n, 3, 32, 32) uint8: a class-dependent mean image plus noise, and y.npy, written in chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    means = rng.integers(40, 215, (10, 3, 32, 32))
    y = rng.integers(0, 10, n)
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.uint8, shape=(n, 3, 32, 32))
    for start in range(0, n, chunk):
        part = y[start:start + chunk]
        X[start:start + len(part)] = np.clip(means[part] + rng.integers(-40, 41, (len(part), 3, 32, 32)), 0, 255)
    X.flush()
    del X
    np.save(folder / "y.npy", y)


def workspace(path: Path, source: Path, threads: int) -> Path:
    """A copy of the project's code with params for the npy source, an MLP and one epoch per stage."""
    path.mkdir(parents=True)
    shutil.copytree(ROOT / "components", path / "components", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="npy", path=str(source))
    params["model"].update(arch="mlp", hidden=256)
    params["runtime"].update(threads=threads, checkpoint_every=0)
    params["stage1"].update(epochs=2, batch_size=256)  # stage one needs 2 (label wave)
    params["stage2"].update(method="ce", epochs=2, batch_size=256)
    params["stage2"]["selection"]["enabled"] = False
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def set_mode(ws: Path, mode: str) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["runtime"]["data_on_device"] = mode
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def status_kb(pid: int) -> dict[str, int]:
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "VmRSS"):
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def run_stage(ws: Path, stage: str) -> dict[str, float]:
    """Run one stage as a child process; its wall and CPU seconds and peak private / resident memory (MiB)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", f"components.stages.{stage}"], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"RssAnon": 0, "VmRSS": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in status_kb(proc.pid).items():
                peak[key] = max(peak[key], value)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed in {ws}:\n{output[-3000:]}")
    return {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
            "anon_mib": peak["RssAnon"] / 1024, "rss_mib": peak["VmRSS"] / 1024}


def epoch_rates(ws: Path, log: str, n_train: int) -> tuple[float, float]:
    """Images/s of the first epoch (cold: a fresh process maps the shards' pages as it reads them) and the last."""
    with open(ws / "metrics" / log) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return n_train / float(rows[0]["train_seconds"]), n_train / float(rows[-1]["train_seconds"])


def du_mib(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 300_000, 600_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lnlflow-ooc"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/out_of_core.md")
    args = parser.parse_args()
    memory_rows, speed_rows, disk_rows = [], [], []
    for n in args.sizes:
        shutil.rmtree(args.work, ignore_errors=True)
        source = args.work / "source"
        write_source(source, n)
        ws = workspace(args.work / "ws", source, args.threads)
        stats = {stage: run_stage(ws, stage) for stage in ("inputs", "data", "noise")}
        n_train = int(yaml.safe_load((ws / "data/prepared/manifest.json").read_text())["split"]["train"])
        rates: dict[str, dict[str, list[float]]] = {"never": {}, "always": {}}
        for round_ in range(args.repeats):
            for mode in (("never", "always") if round_ % 2 == 0 else ("always", "never")):
                set_mode(ws, mode)
                for stage, log in (("stage1", "stage1_log.tsv"), ("stage2", "stage2_log.tsv")):
                    measured = run_stage(ws, stage)
                    key = f"{stage} ({mode})"
                    if key not in stats or measured["anon_mib"] > stats[key]["anon_mib"]:
                        stats[key] = measured
                    cold, warm = epoch_rates(ws, log, n_train)
                    rates[mode].setdefault(stage, []).append(warm)
                    rates[mode].setdefault(f"{stage} cold", []).append(cold)
                    rates[mode].setdefault(f"{stage} cpu", []).append(measured["cpu"])
                    rates[mode].setdefault(f"{stage} wall", []).append(measured["wall"])
        stats["evaluate"] = run_stage(ws, "evaluate")
        disk = {"source": du_mib(source), "store": du_mib(ws / "data/prepared")}
        for stage, s in stats.items():
            memory_rows.append(f"| {n:,} | {stage} | {s['anon_mib']:.0f} | {s['rss_mib']:.0f} | {s['wall']:.1f} | "
                               f"{s['cpu']:.1f} |")
        for stage in ("stage1", "stage2"):
            streamed, held = rates["never"][stage], rates["always"][stage]
            ratios = [a / b for a, b in zip(streamed, held)]
            cold = [a / b for a, b in zip(rates["never"][stage + " cold"], rates["always"][stage + " cold"])]
            speed_rows.append(
                f"| {n:,} | {stage} | {statistics.median(streamed):,.0f} | {statistics.median(held):,.0f} | "
                f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) | "
                f"{statistics.median(cold):.2f} | "
                f"{statistics.median(rates['never'][stage + ' cpu']):.1f} / "
                f"{statistics.median(rates['always'][stage + ' cpu']):.1f} |")
        disk_rows.append(f"| {n:,} | {n * 3072 / 2**20:,.0f} | {disk['source']:,.0f} | {disk['store']:,.0f} |")
        print(f"done: N={n:,}", file=sys.stderr, flush=True)
    shutil.rmtree(args.work, ignore_errors=True)
    text = "\n".join([
        f"# Out-of-core data path ({dt.date.today()}, {os.cpu_count()} CPU cores, torch threads "
        f"{args.threads or 'default'}, {args.repeats} rounds)", "",
        "Peak memory per stage (MiB; the larger of the rounds): RssAnon = private memory the process holds; "
        "VmRSS = all resident pages, including the page cache of memory-mapped shards (reclaimable).", "",
        "| N | stage | peak private (RssAnon) | peak resident (VmRSS) | wall s | CPU s |",
        "|---:|---|---:|---:|---:|---:|", *memory_rows, "",
        "Training throughput (images/s of the second epoch's batch loop, median over rounds); ratio = streamed / "
        "in memory per round; first epoch = the same ratio for the first epoch of a fresh process, whose streamed "
        "reads also map the shards' pages (the in-memory path pays that before its loop, untimed); CPU s = process "
        "CPU time of the stage, streamed / in memory.", "",
        "| N | stage | streamed (never) | in memory (always) | ratio (per round) | first epoch | CPU s |",
        "|---:|---|---:|---:|---|---:|---|", *speed_rows, "",
        "Disk (MiB, du): the user's npy folder and data/prepared (the store's shards plus labels and rows.csv).", "",
        "| N | raw pixels | source folder | data/prepared |", "|---:|---:|---:|---:|", *disk_rows, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
