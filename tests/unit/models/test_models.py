"""Tests for components.models (ResNets, input layer, normalisation, local weights) and training.runtime."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from components.config import ModelParams, RuntimeParams
from components.errors import LnlError
from components.models import build_model
from components.models.build import architecture
from components.models.normalization import channel_stats
from components.models.paper_nets import WideResNet
from components.models.resnets import cifar_resnet
from components.training.augment import Augmenter
from components.config import AugmentParams
from components.training.runtime import eager, resolve_runtime

torch.set_num_threads(1)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ResNet-34 (CIFAR) has the well-known 21,282,122 parameters for 10 classes. PreAct-ResNet-18 is ResNet-18's
# 11,173,962 less the three projection BNs (2·(128+256+512) = 1,792) and less 896 because each stage's first
# block normalises its (half-width) input rather than its output: 11,171,274.
@pytest.mark.parametrize(("name", "params"), [("preact_resnet18", 11_171_274), ("resnet34", 21_282_122)])
def test_cifar_resnets_have_the_standard_size_and_shapes(name, params):
    model = cifar_resnet(name, 3, 10, width=64)
    assert _count(model) == params
    model.eval()
    logits, embedding = model(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert logits.shape == (2, 10) and embedding.shape == (2, 512)
    assert logits.dtype == torch.float32


def test_uint8_input_equals_float_input_in_unit_scale():
    torch.manual_seed(0)
    model = cifar_resnet("preact_resnet18", 3, 5, width=8).eval()
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    a, _ = model(x)
    b, _ = model(x.float() / 255)
    torch.testing.assert_close(a, b)


def test_normalize_train_uses_training_split_statistics():
    x = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    x[:, 0] = 255  # channel 0 constant 1.0 -> std 0 -> only centred
    x[:5, 1] = 255  # channel 1 half ones -> mean .5 std .5
    mean, std = channel_stats(x)
    assert mean == pytest.approx([1.0, 0.5, 0.0]) and std == pytest.approx([1.0, 0.5, 1.0])
    cfg = ModelParams(arch="cnn", normalize="train")
    record = architecture(cfg, (3, 4, 4), 2, x_train=x)
    assert record["normalize"]["mean"] == pytest.approx([1.0, 0.5, 0.0])
    model = build_model(record).eval()
    assert "input.mean" not in model.state_dict()  # the statistics live in the record, not the weights


def test_model_params_validation_messages():
    with pytest.raises(ValidationError, match="unknown architecture 'resnet50'"):
        ModelParams(arch="resnet50")
    with pytest.raises(ValidationError, match="mean has 3 values but std has 1"):
        ModelParams(normalize={"mean": [0.5, 0.5, 0.5], "std": [0.2]})
    with pytest.raises(ValidationError, match="needs a GPU"):
        RuntimeParams(device="cpu", compile=True)
    with pytest.raises(LnlError, match="needs image data"):
        architecture(ModelParams(arch="resnet34"), (64,), 10)
    with pytest.raises(LnlError, match="2 mean/std values, but the input has 3"):
        architecture(ModelParams(normalize={"mean": [0.5, 0.5], "std": [0.2, 0.2]}), (3, 8, 8), 10)


def test_weights_load_backbone_and_keep_fresh_head(tmp_path, capsys):
    torch.manual_seed(0)
    source = cifar_resnet("preact_resnet18", 3, 100, width=8)
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    torch.save(backbone, tmp_path / "backbone.pt")
    arch = architecture(ModelParams(arch="preact_resnet18", width=8), (3, 16, 16), 10)
    model = build_model(arch, weights=tmp_path / "backbone.pt")
    assert "head was not in the file" in capsys.readouterr().out
    for key, value in backbone.items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_weights_errors_name_the_problem(tmp_path):
    arch = architecture(ModelParams(arch="preact_resnet18", width=8), (3, 16, 16), 10)
    with pytest.raises(LnlError, match="file not found"):
        build_model(arch, weights=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LnlError, match=r"junk.pt: not a state_dict of tensors \(not a file written by torch.save\)"):
        build_model(arch, weights=tmp_path / "junk.pt")
    wider = cifar_resnet("preact_resnet18", 3, 10, width=16)
    torch.save(wider.state_dict(), tmp_path / "wider.pt")
    with pytest.raises(LnlError, match="has shape .* in the file but"):
        build_model(arch, weights=tmp_path / "wider.pt")
    partial = {k: v for k, v in cifar_resnet("preact_resnet18", 3, 10, width=8).state_dict().items()
               if not k.startswith("body.0.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(LnlError, match="lacks .* tensor"):
        build_model(arch, weights=tmp_path / "partial.pt")


def test_external_arch_without_library_is_one_clear_error():
    arch = architecture(ModelParams(arch="timm:resnet18"), (3, 32, 32), 10)
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(LnlError, match="optional package 'timm'"):
            build_model(arch)
    else:  # pragma: no cover - only where the extra is installed
        assert build_model(arch)(torch.zeros(1, 3, 32, 32))[0].shape == (1, 10)


def test_runtime_is_a_no_op_on_cpu():
    runtime = resolve_runtime(RuntimeParams(amp="auto", channels_last=True, compile=False), torch.device("cpu"))
    assert runtime.amp_dtype is None and not runtime.channels_last and not runtime.compile
    model = cifar_resnet("preact_resnet18", 3, 10, width=8)
    assert runtime.prepare(model) is model
    assert model.body[0][0].weight.is_contiguous()  # not channels-last on the CPU
    with eager(model):  # uncompiled model: nothing set aside
        pass


def test_uint8_augmentation_keeps_geometry_exact():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    cfg = AugmentParams(crop_padding=0, flip=False, cutout=0.0, noise_std=0.0, strong_noise_std=0.0)
    augmenter = Augmenter(cfg, seed=0)
    weak = augmenter.weak(x)
    assert weak.dtype == torch.uint8 and torch.equal(weak, x)  # nothing photometric: stays uint8, unchanged
    jitter = Augmenter(cfg.model_copy(update={"color_jitter": 0.3}), seed=0).strong(x)
    assert jitter.dtype == torch.float32 and 0 <= float(jitter.min()) and float(jitter.max()) <= 1


# The papers' networks (components/models/paper_nets.py), counted for 3×32×32 inputs and 10 classes:
# - wrn28_10: the published WRN-28-10 size on CIFAR-10, 36,479,194 (Zagoruyko & Komodakis; MW-Net, CLID-MU);
# - cnn8_mln: MetaLabelNet's model_cifar10 — convs 3→64→64, 64→128→128, 128→196→196 with biases (832,088),
#   six BN2d (2·(64+64+128+128+196+196) = 1,552), FC 3136→256 (803,072), BN1d 256 (512), FC 256→10 (2,570);
# - cnn9_coteaching: Co-teaching's model.CNN — nine 3×3 convs with biases (3,584 + 2·147,584 + 295,168 +
#   2·590,080 + 1,180,160 + 1,179,904 + 295,040 = 4,429,184), nine BN2d (4,096), FC 128→10 (1,290).
@pytest.mark.parametrize(("name", "params", "embedding", "side"), [
    ("cnn8_mln", 1_639_794, 256, 32), ("cnn9_coteaching", 4_434_570, 128, 32), ("wrn28_10", 36_479_194, 640, 8),
])
def test_paper_networks_have_the_published_size_and_give_logits_and_embedding(name, params, embedding, side):
    torch.manual_seed(0)
    record = architecture(ModelParams(arch=name), (3, side, side), 10)
    model = build_model(record).eval()
    assert _count(model) == params  # WRN's count does not depend on the image size: its forward runs on 8×8 (CPU time)
    logits, features = model(torch.randint(0, 256, (2, 3, side, side), dtype=torch.uint8))
    assert logits.shape == (2, 10) and features.shape == (2, embedding) and logits.dtype == torch.float32


def test_paper_networks_keep_the_head_and_last_block_layout():
    from components.methods.meta_step import virtual_param_names

    cnn8 = build_model(architecture(ModelParams(arch="cnn8_mln"), (1, 28, 28), 10))
    assert cnn8.body[4].in_features == 196 * 3 * 3  # the FC input follows the image size (3136 at 32×32)
    assert {n.rsplit(".", 1)[0] for n in virtual_param_names(cnn8, "last_block")} == {"body.4", "body.5", "head"}
    wrn = WideResNet(3, 100, depth=28, k=1)  # WRN-28-1: the same layout as WRN-28-10, 1/100 of the weights
    assert wrn.head.in_features == 64 and wrn.head.out_features == 100
    last = {n.split(".")[1] for n in virtual_param_names(wrn, "last_block") if n.startswith("body.")}
    assert last == {"12", "13"}  # the last wide block and the final BN


def test_paper_network_errors_are_one_line():
    with pytest.raises(ValidationError, match="model.width is not used by 'wrn28_10'"):
        ModelParams(arch="wrn28_10", width=16)
    with pytest.raises(LnlError, match=r"^model.arch: 'cnn9_coteaching' needs images of at least 28×28 pixels; "
                                       r"this dataset's are 8×8 \(use cnn, or a source with larger images\)$"):
        architecture(ModelParams(arch="cnn9_coteaching"), (1, 8, 8), 10)
