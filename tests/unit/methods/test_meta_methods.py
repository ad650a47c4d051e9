"""The meta-learning methods in the shared loop: they learn, they guard their inputs, they keep BN clean."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from components.config import validate_params
from components.errors import LnlError
from components.methods import get_method
from components.methods.base import MethodContext
from components.models import build_model
from components.noise import inject_noise
from components.training.loop import TensorSplits, accuracy, train_epochs
from components.training.setup import make_augmenter

ARCH = {"arch": "mlp", "input_shape": [10], "n_classes": 4, "hidden": 32, "width": 4, "dropout": 0.0}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(seed: int = 0, n: int = 600, rate: float = 0.6) -> TensorSplits:
    """Four Gaussian blobs in 10-d; 60 % of the training labels flipped to another class; clean val/test."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 10)) * 2.0
    y = rng.integers(0, 4, n + 500)
    X = (centers[y] + rng.normal(size=(len(y), 10))).astype(np.float32)
    noisy, _ = inject_noise(y[:n], n_classes=4, kind="symmetric_exclusive", rate=rate, seed=seed)
    t = torch.from_numpy
    return TensorSplits(t(X[:n]), t(noisy), t(X[n:n + 100]), t(y[n:n + 100]), t(X[n + 100:]), t(y[n + 100:]), 4)


def context(splits: TensorSplits, stage2: dict, *, seed: int = 0, base_epochs: int = 3, **sections) -> MethodContext:
    """A base model trained briefly with CE (the warm-up), then the context a stage-two method receives."""
    params = validate_params({"stage2": stage2, **sections})
    torch.manual_seed(seed)
    model = build_model(ARCH)
    augment = make_augmenter(params.augment, splits, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def ce(idx):
        logits, _ = model(augment.weak(splits.x_train[idx]))
        return F.cross_entropy(logits, splits.y_train[idx]), logits

    with contextlib.redirect_stdout(io.StringIO()):
        train_epochs(model, splits, epochs=base_epochs, batch_size=64, optimizer=optimizer, scheduler=None,
                     batch_loss=ce, seed=seed, label="warm-up")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    wrong = np.zeros(len(splits.y_train), dtype=np.int64)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    return MethodContext(model, splits, augment, params, wrong, torch.device("cpu"), optimizer,
                         arch=ARCH, base_state=base_state)


def train(ctx: MethodContext, method: str, epochs: int) -> float:
    instance = get_method(method)(ctx)
    with contextlib.redirect_stdout(io.StringIO()):
        train_epochs(ctx.model, ctx.splits, epochs=epochs, batch_size=64, optimizer=ctx.optimizer, scheduler=None,
                     batch_loss=instance.batch_loss, after_epoch=lambda e, r: instance.on_epoch_end(e),
                     seed=0, label=method)
    return accuracy(ctx.model, ctx.splits.x_test, ctx.splits.y_test)


VARIANTS = {
    "metalabelnet": {"method": "metalabelnet"},
    "clidmu-vri": {"method": "clidmu", "clidmu": {"meta_set_size": 300, "host": "vri"}},
    "clidmu-wnet": {"method": "clidmu", "clidmu": {"meta_set_size": 300, "host": "wnet"}},
    "mwnet": {"method": "mwnet"},
}


def test_every_meta_method_beats_ce_under_heavy_noise():
    splits = blobs()
    baseline = train(context(splits, {"method": "ce"}), "ce", epochs=15)
    for name, stage2 in VARIANTS.items():
        score = train(context(splits, stage2), stage2["method"], epochs=15)
        assert score > baseline + 0.03, f"{name}: {score:.3f} vs ce {baseline:.3f}"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_meta_update_moves_meta_parameters_not_bn_statistics(name):
    ctx = context(blobs(n=200), {**VARIANTS[name], "clidmu": {**VARIANTS[name].get("clidmu", {}), "meta_set_size": 100}})
    method = get_method(VARIANTS[name]["method"])(ctx)
    phi_before = [p.detach().clone() for p in method.meta_step.phi]
    buffers_before = {k: v.clone() for k, v in ctx.model.named_buffers()}
    idx = torch.arange(64)
    x, y = ctx.splits.x_train[idx], ctx.splits.y_train[idx]
    meta_x = ctx.splits.x_val[:50]

    # One meta update alone, through the method's own cadence helper, with a meta loss on clean data.
    method.maybe_meta_update(lambda forward: method_inner(method, forward, x, y), lambda forward: F.cross_entropy(forward(meta_x)[0], ctx.splits.y_val[:50]))
    assert any(not torch.equal(a, b) for a, b in zip(phi_before, method.meta_step.phi))
    for key, value in ctx.model.named_buffers():
        assert torch.equal(value, buffers_before[key]), key


def method_inner(method, forward, x, y):
    """The inner loss a method would use, built from its own host (depends on φ)."""
    from components.methods.meta_common import soft_label_kl, weighted_loss

    if hasattr(method, "slp"):
        with torch.no_grad():
            features = method.encoder(x)[1]
        return soft_label_kl(torch.softmax(forward(x)[0], 1), torch.softmax(method.slp(features), 1), norm="BC")
    if hasattr(method, "wnet"):
        return weighted_loss(method.wnet, forward(x)[0], y, normalize=True, train_weights=True)
    return method._host_loss(*forward(x), y)


def test_shared_bn_parity_option_does_change_running_statistics():
    ctx = context(blobs(n=200), {"method": "metalabelnet", "metalabelnet": {"bn_meta": "shared"}})
    method = get_method("metalabelnet")(ctx)
    before = ctx.model.body[2].running_mean.clone()
    x = ctx.splits.x_train[:64]
    method.maybe_meta_update(lambda f: method_inner(method, f, x, None),
                             lambda f: F.cross_entropy(f(ctx.splits.x_val[:50])[0], ctx.splits.y_val[:50]))
    assert not torch.equal(before, ctx.model.body[2].running_mean)


def test_meta_interval_skips_meta_updates():
    ctx = context(blobs(n=200), {"method": "mwnet", "meta": {"interval": 3}})
    method = get_method("mwnet")(ctx)
    calls = []
    method.meta_step.step = lambda *a, **k: calls.append(1)
    for _ in range(7):
        method.batch_loss(torch.arange(32))
    assert len(calls) == 3  # steps 0, 3, 6


def captured_losses(method, idx):
    """Run `batch_loss(idx)` with the meta update replaced by a capture of its (inner, meta) loss closures."""
    captured = []
    method.meta_step.step = lambda optimizer, inner, meta, **kwargs: captured.append((inner, meta, kwargs))
    loss, logits = method.batch_loss(idx)
    return captured[0], loss, logits


def model_forward(model):
    return lambda x: model(x)


@pytest.mark.parametrize("host", ["vri", "wnet"])
def test_clidmu_meta_objective_never_sees_labels(host):
    """Replacing every label (training, validation, test) leaves the meta set, the meta loss and its gradient
    ∂L_meta/∂θ̂ — all the meta step takes from the meta batch — bit-identical; new meta images do change them."""
    splits = blobs(n=200)
    rng = np.random.default_rng(1)
    relabel = lambda y: torch.from_numpy(rng.integers(0, 4, len(y)))  # noqa: E731
    corrupted = TensorSplits(splits.x_train, relabel(splits.y_train), splits.x_val, relabel(splits.y_val),
                             splits.x_test, relabel(splits.y_test), 4)
    assert not torch.equal(corrupted.y_train, splits.y_train)
    stage2 = {"method": "clidmu", "clidmu": {"meta_set_size": 100, "host": host}}

    def meta_objective(s: TensorSplits, images_from=None):
        method = get_method("clidmu")(context(s, stage2, base_epochs=1))
        torch.manual_seed(0)
        model = build_model(ARCH)  # the same θ̂ for every run
        if images_from is not None:
            method.meta_images = images_from
        (_, meta, _), _, _ = captured_losses(method, torch.arange(32))
        value = meta(model_forward(model))
        grads = torch.autograd.grad(value, list(model.parameters()))
        return method.meta_images, value.detach(), grads

    images_a, value_a, grads_a = meta_objective(splits)
    images_b, value_b, grads_b = meta_objective(corrupted)
    assert torch.equal(images_a, images_b) and torch.equal(value_a, value_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    _, value_c, _ = meta_objective(splits, images_from=splits.x_train[100:200])  # the test can fail
    assert not torch.equal(value_a, value_c)


def test_metalabelnet_real_loss_is_reverse_ce_on_the_updated_soft_labels():
    """−(1/(B·C)) Σ p log(ȳ + 1e-10), ȳ from the SLP *after* this step's meta update, p from the real forward;
    the two-term form L_KL + L_H gives the same value; loss_norm B divides by B instead."""
    for norm, divisor in (("BC", 32 * 4), ("B", 32)):
        ctx = context(blobs(n=200), {"method": "metalabelnet", "metalabelnet": {"loss_norm": norm}},
                      augment={"noise_std": 0.0, "strong_noise_std": 0.0}, base_epochs=1)
        method = get_method("metalabelnet")(ctx)
        slp_before = [p.detach().clone() for p in method.slp.parameters()]
        idx = torch.arange(32)
        loss, logits = method.batch_loss(idx)  # includes one real meta update of the SLP
        assert any(not torch.equal(a, b) for a, b in zip(slp_before, method.slp.parameters()))
        with torch.no_grad():
            features = method.encoder(ctx.splits.x_train[idx])[1]
            soft = torch.softmax(method.slp(features), dim=1).double()
            p = torch.softmax(logits.detach(), dim=1).double()
            expected = -(p * torch.log(soft + 1e-10)).sum() / divisor
            kl = (p * (torch.log(p) - torch.log(soft + 1e-10))).sum() / divisor
            entropy = -(p * torch.log(p)).sum() / divisor
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(kl + entropy, expected, rtol=1e-9, atol=1e-12)


def test_metalabelnet_inner_loss_wiring_and_virtual_step():
    """The inner loss is KL(p‖softmax(SLP(frozen features))) over B·C, reads no noisy label and depends on φ;
    the meta loss is CE on the trusted split; the virtual step is alpha_inner / meta.inner_lr, else 1."""
    quiet = {"noise_std": 0.0, "strong_noise_std": 0.0}
    ctx = context(blobs(n=200), {"method": "metalabelnet"}, augment=quiet, base_epochs=1)
    method = get_method("metalabelnet")(ctx)
    batches = []
    real_next = method.meta_batches.next
    method.meta_batches.next = lambda: batches.append(real_next()) or batches[-1]
    idx = torch.arange(32)
    (inner, meta, kwargs), _, _ = captured_losses(method, idx)
    assert kwargs["lr"] == 1.0  # the official step, not the classifier's learning rate (1e-3)
    forward = model_forward(ctx.model)
    x = ctx.splits.x_train[idx]
    with torch.no_grad():
        p = torch.softmax(ctx.model(x)[0], 1).double()
        y = torch.softmax(method.slp(method.encoder(x)[1]), 1).double()
        expected_inner = (p * (torch.log(p) - torch.log(y + 1e-10))).sum() / (32 * 4)
        expected_meta = F.cross_entropy(ctx.model(ctx.splits.x_val[batches[0]])[0], ctx.splits.y_val[batches[0]])
    value = inner(forward)
    torch.testing.assert_close(value.double(), expected_inner, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(meta(forward), expected_meta)
    assert any(g.abs().sum() > 0 for g in torch.autograd.grad(value, list(method.slp.parameters())))
    ctx.splits.y_train[:] = (ctx.splits.y_train + 1) % 4  # noisy labels are not read after the warm-up
    (inner_b, _, _), _, _ = captured_losses(method, idx)
    assert torch.equal(inner_b(forward), value)
    for stage2, step in (({"meta": {"inner_lr": 0.1}}, 0.1), ({"metalabelnet": {"alpha_inner": 0.2}}, 0.2),
                         ({"meta": {"inner_lr": 0.3}, "metalabelnet": {"alpha_inner": 0.3}}, 0.3)):
        method = get_method("metalabelnet")(context(blobs(n=200), {"method": "metalabelnet", **stage2}, base_epochs=1))
        assert captured_losses(method, idx)[0][2]["lr"] == step
    with pytest.raises(LnlError, match=r"metalabelnet.alpha_inner \(0.2\) and meta.inner_lr \(0.1\) both set"):
        validate_params({"stage2": {"method": "metalabelnet", "meta": {"inner_lr": 0.1},
                                    "metalabelnet": {"alpha_inner": 0.2}}})


def test_meta_methods_start_as_their_papers():
    from components.stages.stage2 import resolve_init

    for name, init in (("clidmu", "scratch"), ("mwnet", "scratch"), ("metalabelnet", "base")):
        assert resolve_init(None, get_method(name), name) == init
    assert resolve_init("base", get_method("clidmu"), "clidmu") == "base"  # the stage-one start stays an option
    params = validate_params({})
    assert (params.stage2.mwnet.normalize_weights, params.stage2.mwnet.meta_weight_decay) == (True, 1e-4)
    assert get_method("metalabelnet").warmup_end(params) == "last" == get_method("dividemix").warmup_end(params)
    assert get_method("ido").warmup_end(params) == "base"
    tuned = validate_params({"stage2": {"metalabelnet": {"warmup_end": "base"}, "dividemix": {"warmup_end": "base"}}})
    assert get_method("metalabelnet").warmup_end(tuned) == "base" == get_method("dividemix").warmup_end(tuned)


def test_bad_inputs_fail_before_training():
    splits = blobs(n=200)
    with pytest.raises(LnlError, match="meta_set_size.*exceeds the 200 training samples"):
        get_method("clidmu")(context(splits, {"method": "clidmu"}))  # default meta set: 1000 images
    for method in ("metalabelnet", "mwnet"):
        with pytest.raises(LnlError, match="trusted meta set with clean labels.*val_labels"):
            get_method(method)(context(splits, {"method": method}, noise={"val_labels": "noisy"}))


@pytest.mark.parametrize(("stage2", "expected"), [
    ({"method": "metalabelnet"}, ("full", 1, 1)),
    ({"method": "metalabelnet", "meta": {"meta_batch_size": 32}}, ("full", 1, 1)),
    ({"method": "mwnet"}, ("full", 1, 8)),
    ({"method": "clidmu", "clidmu": {"meta_set_size": 100}}, ("full", 1, 8)),
    ({"method": "clidmu", "clidmu": {"meta_set_size": 100, "host": "vri"}}, ("full", 3, 8)),
    ({"method": "clidmu", "clidmu": {"meta_set_size": 100, "host": "vri"}, "meta": {"interval": 1}}, ("full", 1, 8)),
    ({"method": "clidmu", "clidmu": {"meta_set_size": 100}, "meta": {"scope": "last_block", "interval": 3,
                                                                      "refresh": 2}}, ("last_block", 3, 2)),
])
def test_meta_settings_default_per_method_and_can_be_overridden(stage2, expected):
    method = get_method(stage2["method"])(context(blobs(n=200), stage2, base_epochs=1))
    assert (method.scope, method.interval, method.refresh) == expected
    # meta batch: MetaLabelNet's is the training batch (its official meta loader), the others' 100
    meta_batch = stage2.get("meta", {}).get("meta_batch_size") or (64 if stage2["method"] == "metalabelnet" else 100)
    assert method.meta_batch_size() == meta_batch == method.meta_batches.batch_size
    assert method.meta_step.mode == "directional" and method.meta_direction is not None
    assert method.meta_step.scope == expected[0]


def test_clidmu_strong_all_takes_the_official_randaugment_view(monkeypatch):
    """`clidmu.aug: strong_all` = RandAugment for training and meta images, whatever `augment.strong` is."""
    from components.training.augment import Augmenter

    calls: list[str] = []
    for view in ("weak", "strong", "randaugment"):
        original = getattr(Augmenter, view)
        monkeypatch.setattr(Augmenter, view, lambda self, x, _o=original, _v=view: calls.append(_v) or _o(self, x))
    ctx = context(blobs(n=200), {"method": "clidmu", "clidmu": {"meta_set_size": 50, "aug": "strong_all"}},
                  base_epochs=1, augment={"strong": "basic"})
    calls.clear()
    get_method("clidmu")(ctx).batch_loss(torch.arange(32))
    # training batch, then meta batch; feature vectors have no RandAugment, so it falls back to `strong` inside
    assert calls == ["randaugment", "strong"] * 2


def test_mwnet_weighted_loss_values_normalised_and_not():
    """The two reductions of MW-Net's weighted loss, by value: Σ w·ℓ / Σ w (default) and the official mean of w·ℓ."""

    from components.methods.meta_common import WeightNet, weighted_loss

    torch.manual_seed(0)
    wnet = WeightNet()
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = F.cross_entropy(logits, labels, reduction="none")
    w = wnet(losses).detach()
    plain = weighted_loss(wnet, logits, labels, normalize=False, train_weights=False)
    normed = weighted_loss(wnet, logits, labels, normalize=True, train_weights=False)
    assert float(plain) == pytest.approx(float((w * losses).sum() / 6), rel=1e-6)
    assert float(normed) == pytest.approx(float((w * losses).sum() / w.sum()), rel=1e-6)
    assert float(plain) != pytest.approx(float(normed), rel=1e-3)  # the sigmoid weights do not sum to the batch size


def test_metalabelnet_encoder_reads_stored_images_once_or_every_augmented_view():
    """unaugmented (default with the frozen encoder): the SLP reads the encoder's features of the stored images,
    computed once and kept out of checkpoints; augmented (official): the features of this step's view."""
    noisy = {"noise_std": 0.5}
    idx = torch.arange(32)
    for view in ("unaugmented", "augmented"):
        ctx = context(blobs(n=200), {"method": "metalabelnet", "metalabelnet": {"feature_view": view}},
                      augment=noisy, base_epochs=1)
        method = get_method("metalabelnet")(ctx)
        (inner, _, _), _, _ = captured_losses(method, idx)
        stored = method.stored_features
        assert (stored is not None) == (view == "unaugmented") and "stored_features" not in method.state_dict()
        forward = model_forward(ctx.model)
        with torch.no_grad():
            p = torch.softmax(ctx.model(ctx.splits.x_train[idx])[0], 1)
            y = torch.softmax(method.slp(method.encoder(ctx.splits.x_train[idx])[1]), 1)
            expected = (p * (torch.log(p) - torch.log(y + 1e-10))).sum() / (32 * 4)
            got = inner(lambda x: forward(ctx.splits.x_train[idx]))  # the inner loss's soft labels, at clean p
        assert torch.allclose(got, expected, atol=1e-6) == (view == "unaugmented")
    assert validate_params({"stage2": {"metalabelnet": {"feature_source": "live_classifier"}}}
                           ).stage2.metalabelnet.encoder_view() == "augmented"
    with pytest.raises(LnlError, match="feature_view 'unaugmented' needs feature_source 'frozen_warmup'"):
        validate_params({"stage2": {"method": "metalabelnet", "metalabelnet": {"feature_view": "unaugmented",
                                                     "feature_source": "live_classifier"}}})
