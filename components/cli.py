"""`lnlflow <command>`: the DVC stages, tracking to MLflow, and the run summary. Imports are lazy."""

from __future__ import annotations

import argparse
import importlib
import sys

from components.paths import STAGES

COMMANDS = {
    **{name: f"components.stages.{name}" for name in STAGES},
    "track": "components.tracking.cli",
    "summary": "components.summary",
    "preset": "components.presets",
    "review": "components.review.cli",
    "verify": "components.integrity",
    "serve": "components.model_server",
}
TAKES_OPTIONS = ("stage2", "evaluate", "track", "preset", "review", "verify", "serve")  # see `lnlflow stage2 --help`
HELP = {
    "inputs": "fingerprint the files params.yaml names, so DVC re-runs what reads them (DVC stage)",
    "data": "materialise the dataset and its split (DVC stage)",
    "noise": "inject label noise into the training split (DVC stage)",
    "stage1": "train the base model, counting wrong events (DVC stage)",
    "stage2": "train the robust stage-two method (DVC stage)",
    "evaluate": "metrics, label-issue report and plots (DVC stage)",
    "track": "log the current pipeline outputs as one MLflow run and register the model (idempotent)",
    "summary": "print the results of the last pipeline run",
    "preset": "list the paper presets, or write one onto params.yaml (lnlflow preset NAME --root PATH)",
    "review": "review the flagged labels: serve (a local page that writes corrections), or export/import (Label Studio)",
    "verify": "hash the data store and the model files in full against the sha256 recorded when they were written",
    "serve": "serve the registered champion model over REST (mlflow models serve) and print the curl line to call it",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lnlflow", description="Learning with noisy labels: pipeline commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        sub.add_parser(name, help=HELP[name], add_help=name not in TAKES_OPTIONS)  # those print their own --help
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in TAKES_OPTIONS:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from components.stages.common import run_stage

    module = importlib.import_module(COMMANDS[args.command])
    if args.command in TAKES_OPTIONS:
        return run_stage(args.command, lambda: module.main(rest))
    return run_stage(args.command, module.main)


if __name__ == "__main__":
    sys.exit(main())
