"""The method comparison (compare/dvc.yaml) on digits under several noise settings, one table per setting.

For each setting a temporary copy of the project is made, `dvc repro` builds its stage one, and
`dvc repro compare/dvc.yaml` trains every run of `--runs` (a YAML mapping like params.yaml's compare.runs)
for each seed on that one cached stage one. The tables are concatenated into `--out`. Cost columns are
ratios to CE measured in the same comparison; absolute seconds depend on the (shared) machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import SETTINGS  # noqa: E402  (the noise settings every benchmark shares)


def workspace(setting: dict, runs: dict, seeds: list[int], stage2_epochs: int | None, threads: int) -> Path:
    """A throwaway copy of the project with the setting's noise and the comparison runs in params.yaml."""
    ws = Path(tempfile.mkdtemp(prefix="lnlflow-compare-"))
    for name in ("components", "compare"):
        shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__", "dvc.lock"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, ws / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["noise"].update(setting)
    params["compare"] = {"seeds": seeds, "runs": runs}
    if stage2_epochs:
        params["stage2"]["epochs"] = stage2_epochs
    params["runtime"]["threads"] = threads
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return ws


def run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, required=True, help="YAML mapping: run name → stage2 overrides")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--stage2-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="runtime.threads (0 = torch default; 1 lets two settings run side by side on 2 cores)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = yaml.safe_load(args.runs.read_text())
    threads = args.threads or "default"
    sections = [f"# Method comparison on digits ({dt.date.today()}, torch threads {threads}, 2 CPU cores)", ""]
    for name in args.settings:
        start = time.perf_counter()
        ws = workspace(SETTINGS[name], runs, args.seeds, args.stage2_epochs, args.threads)
        try:
            run(["dvc", "init", "-q", "--no-scm"], ws)
            run(["dvc", "repro"], ws)
            run(["dvc", "repro", "compare/dvc.yaml"], ws)
            table = (ws / "outputs/comparison.md").read_text()
        finally:
            shutil.rmtree(ws, ignore_errors=True)
        sections += [f"## {name}", "", table, f"({time.perf_counter() - start:.0f} s)", ""]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(sections))
        print(f"done: {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
