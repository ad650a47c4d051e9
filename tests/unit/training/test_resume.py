"""Resume checkpoints: generic state capture, and (k epochs, crash, resume) == N epochs straight, exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.config import validate_params
from components.errors import LnlError
from components.methods import get_method
from components.training.resume import ResumeCheckpoint, capture, restore, run_key, section_values
from components.training.loop import train_epochs
from tests.unit.methods.test_meta_methods import blobs, context

TIMING = ("seconds", "train_seconds", "method_seconds", "train_cpu_seconds", "method_cpu_seconds")


class Crash(Exception):
    """Stands in for `kill -9` in the middle of an epoch."""


class Holder:
    """Not a components object: capture must refuse it."""


def same(a, b) -> bool:
    """Exact equality of captured states (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def saved_and_loaded(value, tmp_path):
    """capture → torch.save → torch.load(weights_only=True), as a checkpoint file does."""
    torch.save(capture(value), tmp_path / "state.pt")
    return torch.load(tmp_path / "state.pt", weights_only=True)


def test_capture_restore_round_trip_keeps_shared_objects(tmp_path):
    from components.methods.dividemix import CycledSubset  # an lnlflow helper object with a generator inside

    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(1)
    subset = CycledSubset(torch.arange(10), gen)
    subset.take(3)
    state = {"net": net, "opt": opt, "gen": gen, "np_gen": np.random.default_rng(5), "subset": subset,
             "counts": np.arange(4, dtype=np.int64), "scalar": np.float64(2.5), "grown": [torch.ones(2)],
             "pair": (1, torch.zeros(3)), "none": None, "config": validate_params({}).runtime}
    saved = saved_and_loaded(state, tmp_path)
    expected = {"weight": net.weight.detach().clone(), "gen": gen.get_state(), "draw": state["np_gen"].random(),
                "order": subset.take(7).clone()}
    fresh_net = nn.Linear(3, 2)
    fresh_gen = torch.Generator()
    fresh = {"net": fresh_net, "opt": torch.optim.Adam(fresh_net.parameters(), lr=0.1), "gen": fresh_gen,
             "np_gen": np.random.default_rng(0), "subset": CycledSubset(torch.arange(10), fresh_gen),
             "counts": np.zeros(4, dtype=np.int64), "scalar": 0.0, "grown": [], "pair": (0, None), "none": 3}
    restored = restore(fresh, saved)
    assert restored is fresh and fresh["net"] is fresh_net and fresh["gen"] is fresh_gen
    assert fresh["subset"].gen is fresh_gen  # the alias survives: generators are restored in place
    assert torch.equal(fresh_net.weight, expected["weight"])
    assert fresh["opt"].state_dict()["state"][0]["step"] == 1
    assert fresh["np_gen"].random() == expected["draw"]
    assert torch.equal(fresh["subset"].take(7), expected["order"])
    assert fresh["counts"].dtype == np.int64 and fresh["counts"].tolist() == [0, 1, 2, 3]
    assert fresh["scalar"] == 2.5 and isinstance(fresh["scalar"], np.float64)
    assert same(fresh["grown"], [torch.ones(2)]) and same(fresh["pair"], (1, torch.zeros(3)))
    assert fresh["none"] is None and "config" not in saved


def test_capture_refuses_state_it_does_not_know():
    with pytest.raises(TypeError, match="Holder"):
        capture({"thing": Holder()})


def test_run_key_follows_params_inputs_but_not_the_cadence(tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes(b"one")

    def key(p) -> str:
        return run_key({name: section_values(p, name) for name in ("stage1", "runtime")}, [data])

    params = validate_params({})
    before = key(params)
    assert key(validate_params({"runtime": {"checkpoint_every": 3}})) == before
    assert key(validate_params({"stage1": {"lr": 0.5}})) != before
    data.write_bytes(b"two")
    assert key(params) != before


class DropoutNet(nn.Module):
    """(logits, embedding) with dropout, so the global RNG matters."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3)), nn.Linear(16, 4)

    def forward(self, x):
        h = self.body(x)
        return self.head(h), h


def train_ce(tmp_path, *, epochs: int, crash_after: int | None = None, every: int = 1, key: str = "k",
             recipe=None, grad_clip: float | None = None):
    """CE with dropout, augmentation and a cosine schedule (or `recipe(model) -> (optimizer, scheduler)`); raises
    Crash inside epoch crash_after + 1."""
    ctx = context(blobs(n=200), {"method": "ce"}, base_epochs=0)
    model = DropoutNet()
    if recipe is None:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    else:
        opt, sched = recipe(model)
    resume = ResumeCheckpoint("ce", key, every=every, parts={"augment": ctx.augment}, root=tmp_path)

    def loss(idx):
        logits, _ = model(ctx.augment.weak(ctx.splits.x_train[idx]))
        return F.cross_entropy(logits, ctx.splits.y_train[idx]), logits

    def after(epoch, row):
        if crash_after is not None and epoch > crash_after:
            raise Crash
        return {}

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rows = train_epochs(model, ctx.splits, epochs=epochs, batch_size=32, optimizer=opt, scheduler=sched,
                            batch_loss=loss, after_epoch=after, seed=0, label="ce", checkpointer=resume,
                            grad_clip=grad_clip)
    return model, rows, out.getvalue(), resume


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_plain_loop_resumes_bit_identically_and_only_a_matching_checkpoint(tmp_path):
    straight, rows, _, _ = train_ce(tmp_path / "a", epochs=4)
    assert not list((tmp_path / "a").rglob("*.tmp"))
    with pytest.raises(Crash):
        train_ce(tmp_path / "b", epochs=4, crash_after=2)
    assert torch.load(tmp_path / "b/ce/checkpoint.pt", weights_only=True)["epoch"] == 2
    (tmp_path / "b/ce/.checkpoint.pt.dead.tmp").write_bytes(b"half")  # a write cut short by a kill
    resumed, resumed_rows, log, resume = train_ce(tmp_path / "b", epochs=4)
    assert "ce: resuming from epoch 2/4 checkpoint" in log
    assert not (tmp_path / "b/ce/.checkpoint.pt.dead.tmp").exists()
    assert same(capture(resumed), capture(straight))
    assert same(untimed(resumed_rows), untimed(rows)) and len(resumed_rows) == 4
    resume.discard()
    assert not (tmp_path / "b/ce").exists()
    # A checkpoint from another configuration is discarded with one line, and training starts over.
    with pytest.raises(Crash):
        train_ce(tmp_path / "c", epochs=4, crash_after=1)
    other, other_rows, log, _ = train_ce(tmp_path / "c", epochs=4, key="another")
    assert "discarding the checkpoint of a different configuration" in log and "resuming" not in log
    assert same(untimed(other_rows), untimed(rows))


def test_unreadable_checkpoint_is_discarded_and_cadence_zero_writes_nothing(tmp_path):
    (tmp_path / "a/ce").mkdir(parents=True)
    (tmp_path / "a/ce/checkpoint.pt").write_bytes(b"not a checkpoint")
    _, _, log, resume = train_ce(tmp_path / "a", epochs=2)
    assert "discarding an unreadable checkpoint" in log
    assert torch.load(resume.path, weights_only=True)["epoch"] == 2
    _, _, _, off = train_ce(tmp_path / "off", epochs=2, every=0)
    assert not off.path.exists()
    _, _, _, sparse = train_ce(tmp_path / "sparse", epochs=3, every=2)
    assert torch.load(sparse.path, weights_only=True)["epoch"] == 2


def test_a_checkpoint_that_does_not_fit_the_objects_is_one_clear_error(tmp_path):
    with pytest.raises(Crash):
        train_ce(tmp_path, epochs=3, crash_after=1)
    payload = torch.load(tmp_path / "ce/checkpoint.pt", weights_only=True)
    payload["loop"]["model"] = {"nonsense": torch.zeros(1)}
    torch.save(payload, tmp_path / "ce/checkpoint.pt")
    with pytest.raises(LnlError, match="cannot restore this checkpoint"):
        train_ce(tmp_path, epochs=3)


METHODS = {
    "coteaching": {"coteaching": {"forget_rate": 0.4, "num_gradual": 2}},
    "dividemix": {"dividemix": {"loss_history": 2}},
    "ido": {},
    "metalabelnet": {},
    "clidmu": {"clidmu": {"meta_set_size": 64}},
    "elr": {},
}


def train_method(name: str, root, *, epochs: int, crash_after: int | None = None):
    """Stage two as the stage runs it (fresh context, method, AdamW + cosine schedule), checkpointing every epoch."""
    ctx = context(blobs(n=160), {"method": name, "epochs": epochs, **METHODS[name]}, base_epochs=1)
    if name == "coteaching":
        ctx = dataclasses.replace(ctx, init="scratch")
    method = get_method(name)(ctx)
    model = method.eval_model
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ctx.optimizer, T_max=epochs)
    resume = ResumeCheckpoint("stage2", "k", every=1, parts={"augment": ctx.augment, "method": method}, root=root)

    def after(epoch, row):
        if crash_after is not None and epoch > crash_after:
            raise Crash
        return method.on_epoch_end(epoch)

    with contextlib.redirect_stdout(io.StringIO()):
        rows = train_epochs(model, ctx.splits, epochs=epochs, batch_size=32, optimizer=ctx.optimizer,
                            scheduler=sched, batch_loss=method.batch_loss, after_epoch=after, seed=0,
                            label=name, checkpointer=resume)
    return {"model": capture(model), "method": method.state_dict(), "optimizer": ctx.optimizer.state_dict(),
            "augment": capture(ctx.augment), "rows": untimed(rows), "rng": torch.get_rng_state(),
            "scores": method.noise_scores()}


@pytest.mark.parametrize("name", list(METHODS))
def test_method_state_resumes_bit_identically(name, tmp_path):
    straight = train_method(name, tmp_path / "straight", epochs=3)
    with pytest.raises(Crash):
        train_method(name, tmp_path / "resumed", epochs=3, crash_after=1)
    resumed = train_method(name, tmp_path / "resumed", epochs=3)
    scores = straight.pop("scores"), resumed.pop("scores")
    for part in straight:
        assert same(straight[part], resumed[part]), part
    assert (scores[0] is None and scores[1] is None) or np.array_equal(scores[0], scores[1])


def test_every_method_state_is_checkpointable(tmp_path):
    """The generic method state covers every registered method (no attribute of an unknown type)."""
    from components.methods import REGISTRY

    extra = {"clidmu": METHODS["clidmu"]}
    for name in REGISTRY:
        ctx = context(blobs(n=64), {"method": name, **extra.get(name, {})}, base_epochs=0)
        method = get_method(name)(ctx)
        state = saved_and_loaded(method.state_dict(), tmp_path)
        assert "ctx" not in state and "model" not in state
        method.load_state_dict(state)
