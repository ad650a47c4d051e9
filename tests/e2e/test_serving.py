"""The registered model takes data as the source gives it, through MLflow's scoring server and in process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from components import paths
from components.io import write_json
from components.model_server import stop
from tests.conftest import BIN, make_workspace, run, write_params

NAME = "lnlflow-digits"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A digits pipeline trained well enough (no noise, a few CE epochs) that its predictions mean something."""
    ws = make_workspace(tmp_path_factory.mktemp("serving") / "ws", git=False)
    write_params(ws, noise={"kind": "none"}, stage1={"epochs": 3, "lr": 0.01},
                 stage2={"method": "ce", "epochs": 3, "lr": 0.01, "init": "base"})
    run(["dvc", "repro"], ws)
    return ws


def _log(mlflow, root: Path, tmp_path: Path, register: bool = False):
    """Log (and register as champion) the way tracking does; returns the model URI and the seconds it took."""
    from mlflow import MlflowClient

    from components.serving import log_model

    client = MlflowClient()
    experiment = client.create_experiment(f"serving {tmp_path}", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        start = time.perf_counter()
        info = log_model(mlflow, root)
        if not register:
            return info.model_uri, time.perf_counter() - start
        version = mlflow.register_model(info.model_uri, NAME).version
        client.set_registered_model_alias(NAME, "champion", version)
    return f"models:/{NAME}@champion", time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, inputs) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": inputs}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture()
def server(workspace, mlflow_db, tmp_path):
    """`mlflow models serve` of the champion on a free loopback port (run from an unrelated folder, so the
    components package comes from the model's code_paths); stopped by its process group in teardown."""
    import mlflow

    uri, seconds = _log(mlflow, workspace, tmp_path, register=True)
    print(f"log_model + register: {seconds:.2f} s")
    port = _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": mlflow_db}
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen(
        [f"{BIN}/mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"scoring server did not come up:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield SimpleNamespace(port=port, model=mlflow.pyfunc.load_model(uri), uri=uri)
    finally:
        stop(process)  # the same SIGTERM-then-SIGKILL of the server's process group as `lnlflow serve` uses
        log.close()


def test_input_record_per_source(tmp_path):
    """The data manifest's `input` record: how raw source values map to the stored X."""
    from components.data.record import input_record
    from components.data.sources import load_csv_source, load_digits_source, load_npz_source

    digits = input_record(load_digits_source(None), "digits")
    assert digits == {"kind": "digits", "dtype": "float64", "shape": [8, 8], "range": [0.0, 16.0], "scale": 16.0,
                      "integer": True}
    np.savez(tmp_path / "grey.npz", X=np.array([[[0, 255]], [[7, 9]]], dtype=np.uint8), y=np.array([0, 1]))
    grey = input_record(load_npz_source(SimpleNamespace(path=str(tmp_path / "grey.npz"), source="npz")), "npz")
    assert grey == {"kind": "npz", "dtype": "uint8", "shape": [1, 1, 2], "range": [0.0, 255.0], "scale": 255.0,
                    "integer": True}
    (tmp_path / "rows.csv").write_text("a,b,label\n-1.5,2,x\n0.5,4,y\n")
    rows = load_csv_source(SimpleNamespace(path=str(tmp_path / "rows.csv"), source="csv", label_column="label"))
    assert input_record(rows, "csv") == {"kind": "csv", "dtype": "float", "shape": [2], "range": [-1.5, 4.0],
                                         "scale": 1.0, "integer": False}


@pytest.mark.slow
def test_scoring_server_takes_raw_digits(server):
    from sklearn.datasets import load_digits

    digits = load_digits()
    # float64 (N, 8, 8) in 0..16, as the source gives them; a model of a few epochs is right on most of 300 digits,
    # while a wrong scale or layout would land near chance (0.1)
    labels = server.model.predict(digits.images[:300])["label"].astype(int).to_numpy()
    accuracy = float((labels == digits.target[:300]).mean())
    print(f"raw digits accuracy: {accuracy:.3f}")
    assert accuracy >= 0.7
    images, rows = digits.images[:8], digits.data[:8]
    direct = server.model.predict(images)
    assert list(direct.columns) == ["label", "probability", *(str(c) for c in range(10))]

    status, body = _post(server.port, images.tolist())
    assert status == 200, body
    served = body["predictions"]
    assert [row["label"] for row in served] == direct["label"].tolist()
    np.testing.assert_array_equal([[row[c] for c in direct.columns[1:]] for row in served], direct.iloc[:, 1:].to_numpy())

    status, flat = _post(server.port, rows.tolist())  # load_digits().data: (N, 64)
    assert status == 200 and flat["predictions"] == served

    status, body = _post(server.port, (images * 16).tolist())  # 0..256: e.g. someone rescaled to bytes
    assert status == 400
    assert body["message"].endswith(f"input values must lie in [0, 16] like load_digits().images (got max {images.max() * 16:g})")
    status, body = _post(server.port, (images / 16).tolist())  # already scaled to [0, 1]: refused, not mispredicted
    assert status == 400 and "must be whole numbers 0..16 like load_digits().images, not already scaled" in body["message"]
    status, body = _post(server.port, images[:, :4].tolist())
    assert status == 400 and body["message"].endswith(
        "input must have shape (N, 8, 8) like load_digits().images or (N, 64) like load_digits().data (got (8, 4, 8))")


def _root(tmp_path: Path, dataset, source: str, arch: dict) -> Path:
    """The files `log_model` reads (manifest, dataset.npz, selected checkpoint) for `dataset` and an untrained `arch`."""
    import torch

    from components.data.record import input_record
    from components.data.store import write_store
    from components.models import build_model, save_model_checkpoint

    root = tmp_path / "root"
    (root / paths.PREPARED).mkdir(parents=True)
    np.savez(root / paths.DATASET_NPZ, y=dataset.y, test_idx=np.arange(4))
    write_store(root / paths.STORE, dataset.X)
    write_json(root / paths.DATA_MANIFEST, {"classes": list(dataset.classes), "input_shape": list(dataset.X.shape[1:]),
                                            "input": input_record(dataset, source)})
    torch.manual_seed(0)
    model = build_model(arch).eval()
    save_model_checkpoint(root / paths.MODEL_SELECTED, arch, model.state_dict())
    return root


def _stored_probs(root: Path, X: np.ndarray) -> np.ndarray:
    """What the network gives for the stored (training) arrays: the reference the raw inputs must reproduce."""
    import torch

    from components.models import load_model_checkpoint
    from components.models.nets import ProbabilityHead

    net, _ = load_model_checkpoint(root / paths.MODEL_SELECTED)
    with torch.inference_mode():
        return ProbabilityHead(net.eval())(torch.from_numpy(X)).numpy().astype(np.float64)


@pytest.mark.slow
def test_npz_floats_and_uint8_images_in_process(tmp_path, mlflow_db):
    import mlflow
    from mlflow.exceptions import MlflowException

    from components.data.dataset import Dataset
    from components.data.sources import load_npz_source

    rng = np.random.default_rng(0)
    # A user .npz of float64 features, read by the real npz source.
    features = rng.normal(size=(30, 5))
    np.savez(tmp_path / "user.npz", X=features, y=np.arange(30) % 3)
    data = load_npz_source(SimpleNamespace(path=str(tmp_path / "user.npz"), source="npz"))
    root = _root(tmp_path / "npz", data, "npz", {"arch": "mlp", "input_shape": [5], "n_classes": 3, "hidden": 8,
                                                   "width": 4, "dropout": 0.0})
    model = mlflow.pyfunc.load_model(_log(mlflow, root, tmp_path / "npz")[0])
    out = model.predict(features[:6])
    np.testing.assert_allclose(out[["0", "1", "2"]].to_numpy(), _stored_probs(root, data.X[:6]), rtol=1e-6)
    assert out["label"].tolist() == [str(i) for i in out[["0", "1", "2"]].to_numpy().argmax(1)]
    with pytest.raises(MlflowException, match=r"input values must lie in \[-?[\d.]+, [\d.]+\] like the npz source's X "
                                              r"\(training range .* widened by half its width\) \(got max 255\)"):
        model.predict(np.full((2, 5), 255, dtype=np.uint8))

    # uint8 colour images stored channel-first, as the CIFAR and image-folder sources store them.
    pixels = rng.integers(0, 256, size=(12, 3, 6, 6), dtype=np.uint8)
    images = Dataset("pics", pixels, np.arange(12) % 2, ("cat", "dog"), 255.0)
    root = _root(tmp_path / "img", images, "image_folder",
                 {"arch": "cnn", "input_shape": [3, 6, 6], "n_classes": 2, "hidden": 8, "width": 4, "dropout": 0.0})
    model = mlflow.pyfunc.load_model(_log(mlflow, root, tmp_path / "img")[0])
    first, last = model.predict(pixels[:5]), model.predict(pixels[:5].transpose(0, 2, 3, 1))  # (N,C,H,W), (N,H,W,C)
    np.testing.assert_array_equal(first.to_numpy(), last.to_numpy())
    np.testing.assert_allclose(first[["cat", "dog"]].to_numpy(), _stored_probs(root, pixels[:5]), rtol=1e-6)
    with pytest.raises(MlflowException, match=r"whole numbers 0\.\.255 like the image_folder source's uint8 pixels, "
                                              r"not already scaled \(got 0\.\d+\)"):
        model.predict(pixels[:2] / 255.0)
    with pytest.raises(MlflowException, match=r"input must have shape \(N, 3, 6, 6\) or \(N, 6, 6, 3\) \(got \(2, 6, 6\)\)"):
        model.predict(pixels[:2, 0])


@pytest.mark.slow
def test_lnlflow_serve_runs_without_the_venv_on_path_and_prints_a_working_curl_line(workspace, mlflow_db, tmp_path):
    """`lnlflow serve` from an interpreter whose bin folder is not on PATH (`.venv/bin/lnlflow serve` unactivated):
    plain `mlflow models serve` fails there with `exec: uvicorn: not found`; this one serves the champion and
    prints a curl line that, pasted into a shell, gets the model's predictions."""
    import mlflow

    _log(mlflow, workspace, tmp_path, register=True)
    port = _free_port()
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != Path(BIN).resolve())
    env = {**os.environ, "PATH": bare, "MLFLOW_TRACKING_URI": mlflow_db}
    process = subprocess.Popen([f"{BIN}/python", "-m", "components.cli", "serve", "--port", str(port)], cwd=workspace,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True,  # Ctrl-C works even where this suite runs with it ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("curl "):
                break
        assert lines and lines[-1].startswith("curl "), "".join(lines)[-3000:]
        assert any(f"serve: models:/{NAME}@champion (version 1) at http://127.0.0.1:{port}" in line for line in lines)
        called = subprocess.run(["bash", "-c", lines[-1]], capture_output=True, text=True, timeout=60, env=env)
        predictions = json.loads(called.stdout)["predictions"]
        assert len(predictions) == 1 and predictions[0]["label"] in [str(c) for c in range(10)]
        assert abs(sum(predictions[0][str(c)] for c in range(10)) - 1) < 1e-5
    finally:
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C: lnlflow serve stops the scoring server it started
        process.wait(timeout=60)
    time.sleep(1)
    with pytest.raises(OSError):  # nothing is left listening
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)


def test_lnlflow_serve_without_a_champion_is_one_line(workspace, mlflow_db):
    result = run([f"{BIN}/python", "-m", "components.cli", "serve"], workspace, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lnlflow serve: error: no model registered as '{NAME}@champion' in {mlflow_db} "
        f"(Registered Model with name={NAME} not found): run `make run` (or `lnlflow track`) first"]
