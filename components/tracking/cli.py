"""`lnlflow track [--compare]`: what the user reads when a pipeline state (or the comparison) is tracked."""

from __future__ import annotations

import sys
from pathlib import Path

from components.config import load_params
from components.tracking.comparison import track_comparison
from components.tracking.experiment import mlflow_ui_base, ui_url
from components.tracking.tracker import TrackInterrupted, track


def main(argv: list[str] | None = None) -> None:
    """`lnlflow track [--compare]`: track the pipeline state (or the comparison) of the current directory."""
    import argparse

    parser = argparse.ArgumentParser(prog="lnlflow track")
    parser.add_argument("--compare", action="store_true", help="track the method comparison instead")
    args = parser.parse_args(argv)
    root = Path.cwd()
    params = load_params(root / "params.yaml")
    if args.compare:
        result = track_comparison(root, params)
        state = "logged as" if result["new_run"] else "already logged as"
        print(f"track: comparison {state} MLflow run {result['run_id']}")
        return
    try:
        result = track(root, params)
    except KeyboardInterrupt as interrupt:  # our own line instead of the stages' "no outputs were written"
        detail = (str(interrupt) if isinstance(interrupt, TrackInterrupted)
                  else "interrupted before the MLflow run started; nothing logged")
        print(f"lnlflow track: {detail}", file=sys.stderr)
        raise SystemExit(130) from None
    for run_id in result["recovered"]:
        print(f"track: MLflow run {run_id} of an earlier track of this state never finished; marked it FAILED")
    name = params.tracking.model_name
    if not result["new_run"]:
        print(f"track: this pipeline state is already logged as MLflow run {result['run_id']} with version "
              f"{result['version']} of '{name}' (nothing new)")
        return
    verb = "registered as new" if result["new_version"] else "already registered as"
    print(
        f"track: MLflow run {result['run_id']}; model {verb} version {result['version']} of '{name}'"
        f" (champion: version {result['champion']})"
    )
    print(f"track: {ui_url(mlflow_ui_base(result['uri']), result['experiment_id'], result['run_id'])}")
