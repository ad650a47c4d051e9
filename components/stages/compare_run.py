"""DVC stage `compare/dvc.yaml:run@<name>`: one named stage-two variant over every comparison seed.

Each seed trains from the pipeline's cached stage-one outputs into `outputs/compare/<name>/seed-<s>/`
(models, log, stage2.json, eval.json); nothing else of the pipeline is touched.
"""

from __future__ import annotations

import argparse
import json

from components import paths
from components.config import load_params
from components.errors import LnlError
from components.stages import evaluate, stage2
from components.stages.common import run_stage


def run_folder(name: str, seed: int):
    return paths.COMPARE / name / f"seed-{seed}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m components.stages.compare_run")
    parser.add_argument("name", help="a key of compare.runs in params.yaml")
    args = parser.parse_args(argv)
    cfg = load_params().compare
    if args.name not in cfg.runs:
        raise LnlError(f"compare.runs: no run named '{args.name}' (have: {', '.join(cfg.runs)})")
    overrides = dict(cfg.runs[args.name])
    method = overrides.pop("method")
    settings = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]  # JSON is valid YAML
    for seed in cfg.seeds:
        folder = run_folder(args.name, seed)
        stage2.main(["--method", method, "--seed", str(seed), "--out", str(folder), *sum((["--set", s] for s in settings), [])])
        evaluate.main(["--run", str(folder)])


if __name__ == "__main__":
    raise SystemExit(run_stage("compare_run", main))
