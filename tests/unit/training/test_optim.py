"""The training recipe: optimiser, schedule (per-iteration warm-up), gradient clipping, their params, resume, and
stage two's selection without a validation split."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.config import Params, validate_params
from components.data.split import stratified_split
from components.errors import LnlError
from components.methods import REGISTRY, get_method
from components.methods.meta_step import MetaStep
from components.methods.two_networks import make_peer
from components.stages.stage2 import check_trusted_split, selected_model, selection_rule
from components.training.loop import TensorSplits, train_epochs
from components.training.optim import LrSchedule, build_optimizer, build_schedule
from components.training.resume import capture
from tests.unit.training.test_resume import Crash, same, train_ce, untimed
from tests.unit.methods.test_meta_methods import blobs, context


class Linear(nn.Linear):
    """A linear classifier with lnlflow's model interface: (logits, embedding)."""

    def __init__(self):
        super().__init__(10, 4)

    def forward(self, x):
        return super().forward(x), x


def stage(section: str = "stage2", **fields):
    return getattr(validate_params({section: fields}), section)


def tiny_splits(n: int = 12) -> TensorSplits:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 10, generator=gen), torch.randint(0, 4, (n,), generator=gen)
    return TensorSplits(x, y, x[:4], y[:4], x[:4], y[:4], 4)


def batch_rates(cfg, *, epochs: int, n: int = 12, batch_size: int = 4) -> list[list[float]]:
    """The learning rate each batch ran at, per epoch, under the recipe `cfg` (a linear model on random data)."""
    model, splits = Linear(), tiny_splits(n)
    optimizer = build_optimizer(model.parameters(), cfg)
    seen: list[float] = []

    def loss(idx):
        seen.append(optimizer.param_groups[0]["lr"])
        logits, _ = model(splits.x_train[idx])
        return F.cross_entropy(logits, splits.y_train[idx]), logits

    with contextlib.redirect_stdout(io.StringIO()):
        train_epochs(model, splits, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                     scheduler=build_schedule(optimizer, cfg), batch_loss=loss, seed=0, label="t",
                     grad_clip=cfg.grad_clip)
    per = len(seen) // epochs
    return [seen[i * per:(i + 1) * per] for i in range(epochs)]


# --- defaults: today's recipe, exactly ------------------------------------------------------------------------


def test_defaults_are_the_previous_hard_coded_recipe():
    params = Params()
    one = build_optimizer(nn.Linear(3, 2).parameters(), params.stage1)
    assert type(one) is torch.optim.AdamW and build_schedule(one, params.stage1) is None
    assert one.defaults["lr"] == 1e-3 and one.defaults["weight_decay"] == 1e-5 and one.defaults["betas"] == (0.9, 0.999)
    assert params.stage1.grad_clip is None and params.stage2.grad_clip is None
    # stage two: the same numbers as torch's CosineAnnealingLR(T_max=epochs, eta_min=lr_min), bit for bit
    cfg = params.stage2
    ours = build_optimizer(nn.Linear(3, 2).parameters(), cfg)
    theirs = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = build_schedule(ours, cfg)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=cfg.epochs, eta_min=cfg.lr_min)
    for _ in range(cfg.epochs):
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        ours.step(), theirs.step(), schedule.step(), reference.step()
    assert ours.param_groups[0]["lr"] == cfg.lr_min


# --- schedules ----------------------------------------------------------------------------------------------


def test_warmup_is_linear_per_iteration_then_multistep():
    cfg = stage(epochs=4, lr=0.1, optimizer={"name": "sgd"},
                schedule={"name": "multistep", "milestones": [2, 3], "gamma": 0.5, "warmup_epochs": 2})
    rates = batch_rates(cfg, epochs=4)
    assert sum(rates, []) == pytest.approx([0.1 / 6, 0.2 / 6, 0.3 / 6, 0.4 / 6, 0.5 / 6, 0.1,
                                            *[0.05] * 3, *[0.025] * 3], rel=1e-12)


def test_cosine_reaches_its_floor_at_t_max_and_stays_and_warm_restarts_restart():
    cosine = batch_rates(stage(epochs=4, lr=0.1, lr_min=0.02, schedule={"name": "cosine", "t_max": 2}), epochs=4)
    assert [r[0] for r in cosine] == pytest.approx([0.1, 0.06, 0.02, 0.02], rel=1e-12)
    restarts = batch_rates(stage(epochs=4, lr=0.1, lr_min=0.02, schedule={"name": "warm_restarts", "t_0": 2}), epochs=4)
    assert [r[0] for r in restarts] == pytest.approx([0.1, 0.06, 0.1, 0.06], rel=1e-12)
    constant = batch_rates(stage("stage1", epochs=3, lr=0.1, schedule={"warmup_epochs": 1}), epochs=3)
    assert sum(constant, []) == pytest.approx([0.1 / 3, 0.2 / 3, *[0.1] * 7], rel=1e-12)


def test_grad_clip_caps_the_global_norm():
    def update(clip):
        model, splits = Linear(), tiny_splits(8)
        with torch.no_grad():
            model.weight.mul_(50)  # a large loss: its gradient norm is far above 0.1
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        cfg = stage(epochs=1, lr=1.0, weight_decay=0.0, grad_clip=clip,
                    optimizer={"name": "sgd", "momentum": 0.0}, schedule={"name": "constant"})
        optimizer = build_optimizer(model.parameters(), cfg)

        def loss(idx):
            logits, _ = model(splits.x_train[idx])
            return F.cross_entropy(logits, splits.y_train[idx]), logits

        with contextlib.redirect_stdout(io.StringIO()):
            train_epochs(model, splits, epochs=1, batch_size=8, optimizer=optimizer, scheduler=None,
                         batch_loss=loss, seed=0, label="t", grad_clip=cfg.grad_clip)
        return float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())

    assert update(0.1) == pytest.approx(0.1, rel=1e-5)
    assert update(None) > 1.0


def test_the_peer_group_gets_sgd_momentum_and_nesterov():
    """make_peer's second group inherits momentum/Nesterov/weight decay and is stepped like its own optimiser."""
    ctx = context(blobs(n=64), {"method": "coteaching", "optimizer": {"name": "sgd", "nesterov": True},
                                "weight_decay": 5e-4, "lr": 0.05}, base_epochs=0)
    ctx = dataclasses.replace(ctx, optimizer=build_optimizer(ctx.model.parameters(), ctx.params.stage2))
    peer = make_peer(ctx)
    group = ctx.optimizer.param_groups[1]
    assert (group["momentum"], group["nesterov"], group["weight_decay"], group["lr"]) == (0.9, True, 5e-4, 0.05)
    twin = [p.detach().clone().requires_grad_(True) for p in peer.parameters()]
    alone = torch.optim.SGD(twin, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True)
    schedule = build_schedule(ctx.optimizer, ctx.params.stage2)
    for step in range(3):
        for p, q in zip(peer.parameters(), twin):
            p.grad = q.grad = torch.full_like(p, 0.1 * (step + 1))
        ctx.optimizer.step(), alone.step()
        schedule.step()
        for g in alone.param_groups:
            g["lr"] = ctx.optimizer.param_groups[1]["lr"]
    assert all(torch.equal(p, q) for p, q in zip(peer.parameters(), twin))


# --- resume ---------------------------------------------------------------------------------------------------


def train_recipe(root, *, epochs: int, crash_after: int | None = None):
    """SGD + Nesterov, warm-up across epochs 1-2 then multistep, clipping; raises Crash inside epoch crash_after + 1."""
    cfg = stage(epochs=epochs, lr=0.05, grad_clip=0.5, optimizer={"name": "sgd", "nesterov": True},
                schedule={"name": "multistep", "milestones": [3], "warmup_epochs": 2})
    built = {}

    def recipe(model):
        built["optimizer"] = build_optimizer(model.parameters(), cfg)
        built["schedule"] = build_schedule(built["optimizer"], cfg)
        return built["optimizer"], built["schedule"]

    model, rows, _, _ = train_ce(root, epochs=epochs, crash_after=crash_after, recipe=recipe, grad_clip=cfg.grad_clip)
    return {"model": capture(model), "optimizer": built["optimizer"].state_dict(),
            "schedule": built["schedule"].state_dict(), "rows": untimed(rows)}


def test_recipe_resumes_bit_identically_mid_warmup(tmp_path):
    straight = train_recipe(tmp_path / "a", epochs=4)
    with pytest.raises(Crash):
        train_recipe(tmp_path / "b", epochs=4, crash_after=1)  # killed in epoch 2, inside the warm-up
    resumed = train_recipe(tmp_path / "b", epochs=4)
    for part in straight:
        assert same(straight[part], resumed[part]), part
    assert [r["lr"] for r in straight["rows"]] == pytest.approx([0.025, 0.05, 0.05, 0.005])


# --- every method under SGD + Nesterov + multistep + warm-up + clipping -------------------------------------------

METHOD_SETTINGS = {
    "coteaching": {"coteaching": {"forget_rate": 0.4, "num_gradual": 2}},
    "dividemix": {"dividemix": {"loss_history": 2}},
    "clidmu": {"clidmu": {"meta_set_size": 64}},
}
RECIPE = {"epochs": 2, "lr": 0.05, "grad_clip": 1.0, "optimizer": {"name": "sgd", "nesterov": True},
          "schedule": {"name": "multistep", "milestones": [1], "gamma": 0.1, "warmup_epochs": 1}}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_method_trains_an_sgd_epoch_and_the_virtual_step_reads_the_current_rate(name, monkeypatch):
    ctx = context(blobs(n=160), {"method": name, **RECIPE, **METHOD_SETTINGS.get(name, {})}, base_epochs=1)
    if name == "coteaching":
        ctx = dataclasses.replace(ctx, init="scratch")
    cfg = ctx.params.stage2
    ctx = dataclasses.replace(ctx, optimizer=build_optimizer(ctx.model.parameters(), cfg))
    method = get_method(name)(ctx)
    schedule = build_schedule(ctx.optimizer, cfg)
    assert isinstance(schedule, LrSchedule)
    virtual: list[tuple[float, float]] = []  # (step size the meta step used, the classifier's rate at that moment)
    meta_gradient = MetaStep.meta_gradient

    def spy(self, inner_loss, meta_loss, *, lr, **directional):
        virtual.append((lr, ctx.optimizer.param_groups[0]["lr"]))
        return meta_gradient(self, inner_loss, meta_loss, lr=lr, **directional)

    monkeypatch.setattr(MetaStep, "meta_gradient", spy)
    with contextlib.redirect_stdout(io.StringIO()):
        rows = train_epochs(method.eval_model, ctx.splits, epochs=1, batch_size=32, optimizer=ctx.optimizer,
                            scheduler=schedule, batch_loss=method.batch_loss,
                            after_epoch=lambda e, r: method.on_epoch_end(e), seed=0, label=name,
                            grad_clip=cfg.grad_clip)
    assert np.isfinite(rows[0]["loss"]) and rows[0]["lr"] == pytest.approx(0.05)  # the last warm-up batch: full
    assert all(g["lr"] == pytest.approx(0.005) for g in ctx.optimizer.param_groups)  # multistep after epoch 1
    stepped = [p for g in ctx.optimizer.param_groups for p in g["params"] if p in ctx.optimizer.state]
    assert stepped and all("momentum_buffer" in ctx.optimizer.state[p] for p in stepped)
    if name in ("clidmu", "mwnet"):  # plain SGD at the classifier's current (warming-up) rate
        assert virtual and all(used == current for used, current in virtual)
        assert len({current for _, current in virtual}) > 1
    elif name == "metalabelnet":  # the official fixed inner step (α = 1), whatever the classifier's rate
        assert virtual and {used for used, _ in virtual} == {1.0}
    else:
        assert not virtual


# --- params ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"optimizer": {"name": "sgd", "momentum": 0.0, "nesterov": True}},
     "params.yaml: stage2.optimizer: nesterov needs momentum > 0"),
    ({"optimizer": {"name": "rmsprop"}},
     "params.yaml: stage2.optimizer.name: Input should be 'sgd', 'adam' or 'adamw'"),
    ({"optimizer": {"betas": [0.9, 1.0]}},
     "params.yaml: stage2.optimizer: betas must both lie in [0, 1) (got [0.9, 1.0])"),
    ({"schedule": {"name": "multistep"}},
     "params.yaml: stage2.schedule: multistep needs milestones: at least one epoch, e.g. [40, 80]"),
    ({"schedule": {"name": "multistep", "milestones": [80, 40]}},
     "params.yaml: stage2.schedule: milestones must be increasing epochs ≥ 1 (got [80, 40])"),
    ({"schedule": {"warmup_epochs": 30}},
     "params.yaml: stage2: schedule.warmup_epochs (30) must be below epochs (30)"),
    ({"lr_min": 0.01},
     "params.yaml: stage2: lr_min (0.01) is above lr (0.001): the cosine schedule would raise the rate"),
    ({"grad_clip": 0}, "params.yaml: stage2.grad_clip: Input should be greater than 0"),
])
def test_bad_recipes_are_one_line(fields, message):
    with pytest.raises(LnlError) as info:
        validate_params({"stage2": fields}, source="params.yaml")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_stage_two_schedule_defaults_to_cosine_even_when_partly_given():
    assert validate_params({"stage2": {"schedule": {"warmup_epochs": 2}}}).stage2.schedule.name == "cosine"
    assert validate_params({"stage1": {"schedule": {"warmup_epochs": 2}}}).stage1.schedule.name == "constant"


# --- training without a validation split ---------------------------------------------------------------------


def test_val_fraction_zero_trains_on_every_non_test_row():
    y = np.repeat(np.arange(3), 20)
    split = stratified_split(y, n_classes=3, val_fraction=0.0, test_fraction=0.2, seed=0)
    assert split["val"].size == 0 and split["test"].size == 12
    assert np.array_equal(np.sort(np.concatenate([split["train"], split["test"]])), np.arange(60))
    trusted = np.zeros(60, dtype=bool)
    trusted[[0, 25]] = True  # trusted rows still form the validation split
    assert split["val"].size == 0 and stratified_split(
        y, n_classes=3, val_fraction=0.0, test_fraction=0.2, seed=0, trusted=trusted)["val"].tolist() == [0, 25]
    assert validate_params({"data": {"val_fraction": 0}}).data.val_fraction == 0


@pytest.mark.parametrize("method", ["metalabelnet", "mwnet"])
def test_methods_that_need_a_trusted_split_are_refused_without_one(method):
    with pytest.raises(LnlError) as info:
        validate_params({"data": {"val_fraction": 0}, "stage2": {"method": method}}, source="params.yaml")
    assert str(info.value) == (
        f"params.yaml: stage2.method '{method}' needs a trusted validation split (its meta set), but "
        "data.val_fraction is 0 and source 'digits' marks no trusted rows; set data.val_fraction > 0 or choose "
        "another method")
    # a source that may mark trusted rows passes validation; stage two checks the prepared split first thing
    validate_params({"data": {"val_fraction": 0, "source": "npz", "path": "x.npz"}, "stage2": {"method": method}})
    check_trusted_split(method, 5)
    refused = f"^stage2.method '{method}' needs a trusted validation split .* the prepared data has none"
    with pytest.raises(LnlError, match=refused):
        check_trusted_split(method, 0)
    check_trusted_split("clidmu", 0)  # label-free: fine without one


def test_selection_falls_back_to_labelfree_then_last():
    class Selector:
        best_state = {"w": torch.ones(1)}

        def epochs(self):
            return [3, 1]

    model = nn.Linear(1, 1, bias=False)
    best = {"val_acc": 0.9, "epoch": 2, "state": {"w": torch.zeros(1)}}
    assert selection_rule(10, Selector()) == "validation" and selection_rule(10, None) == "validation"
    assert selection_rule(0, Selector()) == "labelfree" and selection_rule(0, None) == "last"
    assert selected_model("validation", best, None, model, 5)[1:] == (2, "val_acc")
    state, epoch, rule = selected_model("labelfree", best, Selector(), model, 5)
    assert torch.equal(state["w"], torch.ones(1)) and (epoch, rule) == (3, "lowest_pool_clid")
    state, epoch, rule = selected_model("last", best, None, model, 5)
    assert torch.equal(state["weight"], model.weight) and (epoch, rule) == (5, "last_epoch")


def test_fused_kernels_where_torch_has_them_and_the_same_steps_as_the_loop():
    """CPU/CUDA floating-point parameters get torch's fused kernel; anything else the default. Fused and per-tensor
    updates agree to rounding (benchmarks/optimizer_step.py times them)."""
    from components.training.optim import adam, fused, sgd

    assert fused(list(nn.Linear(3, 2).parameters())) is True
    assert fused([torch.zeros(3, dtype=torch.int64)]) is None and fused([]) is None
    assert fused([torch.zeros(3, device="meta")]) is None
    assert build_optimizer(nn.Linear(3, 2).parameters(), Params().stage1).defaults["fused"] is True
    for make, kind, settings in ((adam, torch.optim.AdamW, {"decoupled": True, "lr": 0.1, "weight_decay": 0.01}),
                                 (sgd, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True})):
        torch.manual_seed(0)
        ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
        theirs.load_state_dict(ours.state_dict())
        a = make(ours.parameters(), **settings)
        b = kind(theirs.parameters(), **{k: v for k, v in settings.items() if k != "decoupled"})
        for _ in range(5):
            for p, q in zip(ours.parameters(), theirs.parameters()):
                p.grad = q.grad = torch.randn_like(p)
            a.step(), b.step()
        for p, q in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
