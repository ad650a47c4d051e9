"""Data-parallel training: sharding, shard-exact augmentation, global BatchNorm, gathers, and torchrun stages."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from components.config import AugmentParams
from components.errors import LnlError
from components.training.augment import Augmenter
from components.training.distributed import (
    Distributed,
    GlobalBatchNorm,
    ShardedAugmenter,
    convert_global_batchnorm,
    unwrap,
)
from components.training.loop import TensorSplits, train_epochs
from tests.conftest import BIN, make_workspace, run, write_params


def test_single_process_is_a_no_op():
    one = Distributed()
    idx = torch.tensor([4, 1, 3])
    model = nn.Linear(2, 2)
    assert one.shard(idx) is idx and one.loss_scale() == 1.0 and one.batch == (3, 0, 3)
    assert one.gather_rows(idx, idx * 2)[1].tolist() == [8, 2, 6]
    target = torch.zeros(5)
    one.sync_rows(target, idx)
    assert target.tolist() == [0.0] * 5
    assert one.wrap(model) is model and unwrap(model) is model


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shards_partition_the_batch_and_scaled_losses_average_to_the_global_mean(world):
    idx = torch.randperm(23)
    losses = torch.rand(23, dtype=torch.float64)
    parts, scaled = [], []
    for rank in range(world):
        state = Distributed(rank=rank, world=world)
        part = state.shard(idx)
        parts.append(part)
        scaled.append(state.loss_scale() * losses[part].mean())
    assert torch.equal(torch.cat(parts), idx)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert torch.isclose(torch.stack(scaled).mean(), losses[idx].mean())  # what DDP's gradient average sees


@pytest.mark.parametrize("shape", [(10, 1, 8, 8), (10, 5)])
def test_sharded_views_equal_the_single_process_views_of_those_rows(shape):
    x = torch.rand(shape) + 0.5
    cfg = AugmentParams(crop_padding=2, flip=True, cutout=0.25, color_jitter=0.2)
    scale = torch.ones(shape[1]) if len(shape) == 2 else None
    whole = Augmenter(cfg, feature_scale=scale, seed=3)
    expected = torch.cat([whole.weak(x), whole.strong(x)], 1)
    for rank in range(3):
        state = Distributed(rank=rank, world=3)
        part = state.shard(torch.arange(10))
        view = ShardedAugmenter(Augmenter(cfg, feature_scale=scale, seed=3), state)
        got = torch.cat([view.weak(x[part]), view.strong(x[part])], 1)
        torch.testing.assert_close(got, expected[part], rtol=0, atol=0)
        assert view.cfg is cfg  # everything else is the wrapped augmenter's


def test_too_small_a_batch_for_the_processes_is_an_error_before_training():
    x = torch.randn(8, 3)
    y = torch.zeros(8, dtype=torch.long)
    splits = TensorSplits(x, y, x, y, x, y, 2)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    called = []
    with pytest.raises(LnlError, match="batch_size 2 is too small for 2 processes"):
        train_epochs(model, splits, epochs=1, batch_size=2, optimizer=opt, scheduler=None, seed=0, label="t",
                     batch_loss=lambda idx: called.append(idx), dist=Distributed(rank=0, world=2))
    assert not called


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One gloo rank: a BN net trained on its half of a batch; gathers of per-sample rows."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), LNLFLOW_DIST_TIMEOUT="60")
    from components.training import distributed

    torch.manual_seed(0)
    state = distributed.setup(torch.device("cpu"))
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    ddp = state.wrap(net)
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    part = state.shard(torch.arange(10))
    loss = ddp(x[part]).pow(2).sum(1).mean() * state.loss_scale()
    loss.backward()
    rows = torch.zeros(10, 2, dtype=torch.float64)
    rows[part] = x[part, :2] * 10
    state.sync_rows(rows, part)
    counts = np.zeros(10, dtype=np.int64)
    counts[part.numpy()] = part.numpy() + 100
    state.sync_rows(counts, part)
    torch.save({"grads": [p.grad for p in net.parameters()], "running": net[1].running_var.clone(),
                "rows": rows, "counts": torch.from_numpy(counts), "bn": type(net[1]).__name__}, f"{out}/{rank}.pt")
    distributed.shutdown()


def test_two_gloo_ranks_match_one_process_gradients_bn_statistics_and_gathers(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    net(x).pow(2).sum(1).mean().backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert got["bn"] == GlobalBatchNorm.__name__
        for g, p in zip(got["grads"], net.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got["running"], net[1].running_var, rtol=1e-12, atol=0)
        torch.testing.assert_close(got["rows"], x[:, :2] * 10, rtol=0, atol=0)
        assert got["counts"].tolist() == list(range(100, 110))


def test_global_batchnorm_keeps_checkpoint_keys_and_acts_as_batchnorm_alone():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    keys = list(net.state_dict())
    x = torch.randn(4, 1, 5, 5)
    expected = net(x)
    converted = convert_global_batchnorm(net)
    assert isinstance(converted[1], GlobalBatchNorm) and list(converted.state_dict()) == keys
    torch.testing.assert_close(converted(x), expected)  # no process group: plain BatchNorm


# --- the stages under torchrun ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("ddp"), git=False)
    write_params(ws, stage1={"epochs": 2, "batch_size": 128}, stage2={"epochs": 1, "batch_size": 128, "method": "ido"})
    for stage in ("data", "noise"):
        run([sys.executable, "-m", f"components.stages.{stage}"], ws)
    return ws


def test_torchrun_two_processes_give_the_single_process_wrong_events(workspace):
    ws = workspace
    run([sys.executable, "-m", "components.stages.stage1"], ws)
    single = dict(np.load(ws / "outputs/stage1/dynamics.npz"))
    single_log = (ws / "metrics/stage1_log.tsv").read_text().splitlines()

    result = run([f"{BIN}/torchrun", "--standalone", "--nproc_per_node", "2", "-m", "components.stages.stage1"], ws)
    assert result.stdout.count("stage1: base model") == 1  # rank 0 alone reports
    both = np.load(ws / "outputs/stage1/dynamics.npz")
    np.testing.assert_array_equal(both["wrong_events"], single["wrong_events"])
    np.testing.assert_array_equal(both["predictions"], single["predictions"])
    np.testing.assert_allclose(both["losses"], single["losses"], atol=1e-5)
    log = (ws / "metrics/stage1_log.tsv").read_text().splitlines()
    for a, b in zip(log[1:], single_log[1:]):  # loss, accuracies, pred_change (timings aside)
        np.testing.assert_allclose([float(v) for v in a.split("\t")[:7]], [float(v) for v in b.split("\t")[:7]],
                                   rtol=1e-5, equal_nan=True)


def test_single_process_methods_are_refused_under_torchrun(workspace, monkeypatch, capsys):
    from components.stages import stage2
    from components.stages.common import run_stage

    monkeypatch.chdir(workspace)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run_stage("stage2", lambda: stage2.main(["--method", "coteaching", "--out", "refused"])) == 2
    assert "'coteaching' runs in one process only" in capsys.readouterr().err
    assert not (workspace / "refused").exists()
