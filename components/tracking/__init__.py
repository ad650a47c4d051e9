"""The MLflow writer: one run per pipeline state, the model registered idempotently, aliases moved.

The only package that imports MLflow, and only inside functions (the import costs ~3 s). It runs after
`dvc repro` (from `make run`, the Prefect flow, or `lnlflow track`), never inside a DVC stage, so a cached
stage can never swallow a run. A pipeline state (a digest of `dvc.lock`) counts as logged only when its run
FINISHED with the `lnlflow.complete` tag and its model (keyed by its DVC hash) is registered: a failed,
interrupted or killed track blocks nothing. Before any run starts, the pipeline must be up to date (`dvc status`,
input fingerprints) and every file that is logged must exist and parse.

Modules: `tracker` (track: one pipeline state, start to end), `pipeline_state` (its identity, parameters and
freshness), `inputs` (the files a run logs, checked first), `run_log` (what the run holds), `registry` (versions
and aliases), `orphans` (earlier runs of the same state, dead or alive), `comparison` (the compare pipeline's
run), `experiment` (tracking URI, experiment, UI links), `cli` (`lnlflow track`).
"""

from components.tracking.experiment import ui_url
from components.tracking.tracker import track

__all__ = ["track", "ui_url"]  # what scripts outside the package use (docs/screenshots.py)
