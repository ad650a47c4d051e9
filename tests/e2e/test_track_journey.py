"""`lnlflow track` as a user meets it: interrupted, killed, failing or stale tracks block nothing and log nothing
false; a logged run holds what made the outputs, in the shape the MLflow UI shows well."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import yaml

from components.config import METHOD_NAMES, Params, load_params
from tests.conftest import BIN, ROOT, make_workspace, run, write_params

# `lnlflow track` whose model logging waits: the test signals it while it is inside its MLflow run.
SLOW_TRACK = """
import sys, time
import components.tracking.run_log as run_log
real = run_log._log_model
def waiting(mlflow, root):
    print("inside the run", flush=True)
    time.sleep(120)
    return real(mlflow, root)
run_log._log_model = waiting
from components.cli import main
sys.exit(main(["track"]))
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("journey") / "ws", git=True)
    run(["dvc", "repro"], ws)
    return ws


def user_lines(stderr: str) -> list[str]:
    """What lnlflow itself printed (MLflow's own log lines left out)."""
    return [line for line in stderr.splitlines() if line.startswith("lnlflow")]


def signalled_track(workspace, tmp_path, sig: int, while_inside=lambda: None) -> subprocess.CompletedProcess:
    """Start a slow track, call `while_inside` once it is inside its MLflow run, then send it `sig`."""
    script = tmp_path / "slow_track.py"
    script.write_text(SLOW_TRACK)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=workspace, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(300, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        first = proc.stdout.readline()
        if first.strip() != "inside the run":
            raise AssertionError(f"track never reached its MLflow run: {first}{proc.communicate()}")
        while_inside()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_interrupted_or_killed_track_blocks_nothing(workspace, mlflow_db, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_db)
    interrupted = signalled_track(workspace, tmp_path, signal.SIGINT)
    lines = user_lines(interrupted.stderr)
    assert interrupted.returncode == 130 and len(lines) == 1 and "Traceback" not in interrupted.stderr, interrupted
    match = re.fullmatch(r"lnlflow track: interrupted; MLflow run (\w+) marked KILLED, nothing registered", lines[0])
    assert match, lines
    assert client.get_run(match[1]).info.status == "KILLED" and client.search_model_versions() == []

    concurrent = []  # a second track while the first is alive and logging the same state: refused, not "dead"
    killed = signalled_track(workspace, tmp_path, signal.SIGKILL,
                             lambda: concurrent.append(run(["lnlflow", "track"], workspace, check=False)))
    assert killed.returncode == -signal.SIGKILL
    lines = user_lines(concurrent[0].stderr)
    assert concurrent[0].returncode == 2 and len(lines) == 1, concurrent
    assert re.fullmatch(r"lnlflow track: error: another `lnlflow track` \(pid \d+\) is logging this pipeline state as "
                        r"MLflow run \w+ right now: wait for it to finish", lines[0]), lines
    experiment = client.get_experiment_by_name("lnlflow").experiment_id
    (dead,) = client.search_runs([experiment], "attributes.status = 'RUNNING'")

    out = run(["lnlflow", "track"], workspace).stdout
    assert f"MLflow run {dead.info.run_id} of an earlier track of this state never finished; marked it FAILED" in out
    assert "model registered as new version 1 of 'lnlflow-digits' (champion: version 1)" in out, out
    statuses = {r.info.run_id: r.info.status for r in client.search_runs([experiment])}
    assert sorted(statuses.values()) == ["FAILED", "FINISHED", "KILLED"] and statuses[dead.info.run_id] == "FAILED"
    assert "is already logged as MLflow run" in run(["lnlflow", "track"], workspace).stdout


@pytest.mark.slow
def test_failed_tracks_leave_no_logged_state_and_a_retry_logs(workspace, mlflow_db, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from components.tracking import run_log, tracker
    from components.errors import LnlError

    client = MlflowClient(mlflow_db)
    report, aside = workspace / "reports/label_issues.csv", tmp_path / "label_issues.csv"
    report.rename(aside)
    try:
        missing = run(["lnlflow", "track"], workspace, check=False)
    finally:
        aside.rename(report)
    assert missing.returncode == 2, missing
    assert user_lines(missing.stderr) == ["lnlflow track: error: reports/label_issues.csv: file not found (run `dvc repro`)"]
    assert client.get_experiment_by_name("lnlflow") is None  # checked before MLflow was touched

    params = load_params(workspace / "params.yaml")
    real_log_model, real_register = run_log._log_model, run_log._register

    def full_disk(mlflow, root):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_log, "_log_model", full_disk)
    with pytest.raises(LnlError, match=r"No space left on device \(MLflow run \w+ marked FAILED, nothing registered\)"):
        tracker.track(workspace, params)

    def register_then_ctrl_c(*args, **kwargs):
        real_register(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_log, "_log_model", real_log_model)
    monkeypatch.setattr(run_log, "_register", register_then_ctrl_c)
    with pytest.raises(tracker.TrackInterrupted, match="marked KILLED, nothing registered"):
        tracker.track(workspace, params)
    assert client.search_model_versions("name='lnlflow-digits'") == []  # the version it made was taken back

    monkeypatch.setattr(run_log, "_register", real_register)
    result = tracker.track(workspace, params)
    assert result["new_run"] and result["new_version"] and result["promoted"]
    experiment = result["experiment_id"]
    assert sorted(r.info.status for r in client.search_runs([experiment])) == ["FAILED", "FINISHED", "KILLED"]
    assert_logged_as_the_ui_should_show(client, result["run_id"], workspace)


def assert_logged_as_the_ui_should_show(client, run_id: str, workspace) -> None:
    """Params of the active method only, from dvc.lock; curves, not one-bar charts; lineage and a description."""
    tracked = client.get_run(run_id)
    params, metrics, tags = tracked.data.params, tracked.data.metrics, tracked.data.tags
    assert "None" not in params.values() and params["stage2.method"] == "ido"
    assert {key.split(".")[0].split("/")[0] for key in params} <= {
        "data", "noise", "model", "augment", "runtime", "stage1", "stage2", "evaluate"}
    sections = {key.split(".")[1] for key in params if key.startswith("stage2.") and key.count(".") > 1}
    assert sections & {*METHOD_NAMES, "meta"} == {"ido"} and "selection" in sections, sections
    assert params["stage1.weight_decay"] == "1e-05" and params["stage2.lr_min"] == "0.0001"
    assert params["stage1/lr"] == "0.001" and "stage1/lr" not in metrics  # a constant curve is a value
    assert not [k for k in metrics if k.startswith("per_class")] and "stage2/loss" in metrics
    table = [a.path for a in client.list_artifacts(run_id, "evaluation")]
    assert table == ["evaluation/label_health_confusions.json", "evaluation/label_health_per_class.json",
                     "evaluation/per_class_accuracy.json"]

    head = run(["git", "rev-parse", "HEAD"], workspace).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head
    assert tags["mlflow.note.content"].startswith("**ido** on digits") and "test accuracy" in tags["mlflow.note.content"]
    (dataset,) = tracked.inputs.dataset_inputs
    manifest_sha = yaml.safe_load((workspace / "data/prepared/manifest.json").read_text())["sha256"]
    assert dataset.dataset.digest == manifest_sha[:12] and "train " in dataset.dataset.name
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    seconds = metrics["pipeline_seconds"]
    assert seconds > 0 and abs((tracked.info.end_time - tracked.info.start_time) / 1000 - seconds) < 0.01
    experiment = client.get_experiment(tracked.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_track_refuses_outputs_that_params_yaml_no_longer_describes(workspace, mlflow_db, monkeypatch):
    from components.errors import LnlError
    from components.tracking.pipeline_state import check_fresh

    original = (workspace / "params.yaml").read_text()
    write_params(workspace, stage2={"lr": 0.3})
    try:
        stale = run(["lnlflow", "track"], workspace, check=False)
    finally:
        (workspace / "params.yaml").write_text(original)
    assert stale.returncode == 2, stale
    expected = ("lnlflow track: error: the outputs are out of date (stage2: params.yaml: stage2 modified): "
                "run `dvc repro` first, then track")
    assert user_lines(stale.stderr) == [expected]

    check_fresh(workspace)  # the restored file: up to date, the `inputs` stage's "always changed" aside
    inputs = pytest.importorskip("components.stages.inputs")
    monkeypatch.setattr(inputs, "stale_inputs", lambda root: ["data.path raw.npz changed since the last dvc repro"])
    with pytest.raises(LnlError, match=r"out of date \(data.path raw.npz changed since the last dvc repro\)"):
        check_fresh(workspace)


def test_params_are_the_active_methods_in_one_precision():
    from components.tracking.pipeline_state import logged_params

    meta = logged_params(Params.model_validate({"stage2": {"method": "metalabelnet", "lr_min": 1e-4}}))
    assert meta["stage2.lr_min"] == "0.0001" and meta["stage2.weight_decay"] == "1e-05"
    assert {"stage2.meta.grad", "stage2.metalabelnet.slp_lr", "stage2.selection.k"} <= set(meta)
    assert not [k for k in meta if k.startswith(("stage2.ido.", "stage2.clidmu.", "compare.", "schedule."))]
    assert "stage2.meta.interval" not in meta  # None: not logged
    plain = logged_params(Params.model_validate({"stage2": {"method": "ce"}}))
    sections = {k.split(".")[1] for k in plain if k.startswith("stage2.") and k.count(".") > 1}
    assert not sections & {*METHOD_NAMES, "meta"} and "selection" in sections


def test_params_come_from_dvc_lock_read_as_yaml_1_2(tmp_path):
    from components.tracking.pipeline_state import locked_params

    stages = {name: {"cmd": "x"} for name in ("data", "noise", "stage1", "evaluate")}
    stages["stage1"]["params"] = {"params.yaml": {"stage1": {"epochs": 4, "weight_decay": 1e-5}}}
    stages["stage2"] = {"cmd": "x", "params": {"params.yaml": {"noise.rate": 0.2, "stage2": {"lr": 0.3}}}}
    text = yaml.safe_dump({"schema": "2.0", "stages": stages}).replace("1.0e-05", "1e-05")  # as DVC writes it
    (tmp_path / "dvc.lock").write_text(text)
    made_with = locked_params(tmp_path)
    assert made_with.stage1.weight_decay == 1e-5 and made_with.stage1.epochs == 4
    assert made_with.noise.rate == 0.2 and made_with.stage2.lr == 0.3
