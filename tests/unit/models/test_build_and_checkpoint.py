"""components.models: what the built models return, and model checkpoints on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import ModelParams
from components.errors import LnlError
from components.models import build_model, load_model_checkpoint, save_model_checkpoint
from components.models.build import architecture

torch.set_num_threads(1)

# --- models and checkpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, shape, emb",
    [
        (ModelParams(arch="mlp", hidden=16), (1, 8, 8), 16),
        (ModelParams(arch="mlp", hidden=16), (5,), 16),
        (ModelParams(arch="cnn", width=4), (1, 8, 8), 16),
        (ModelParams(arch="cnn", width=4), (3, 16, 16), 16),
    ],
)
def test_models_return_logits_and_embedding(cfg, shape, emb):
    model = build_model(architecture(cfg, shape, 7))
    logits, embedding = model(torch.rand(3, *shape))
    assert logits.shape == (3, 7)
    assert embedding.shape == (3, emb)


def test_cnn_on_feature_data_raises():
    with pytest.raises(LnlError, match="model.arch.*'cnn' needs image data.*mlp"):
        architecture(ModelParams(arch="cnn"), (64,), 10)


def test_checkpoint_round_trip(tmp_path):
    arch = architecture(ModelParams(arch="cnn", width=4), (1, 8, 8), 10)
    torch.manual_seed(0)
    model = build_model(arch)
    model(torch.rand(8, 1, 8, 8))  # update BatchNorm running stats so buffers are non-trivial
    model.eval()
    path = tmp_path / "sub" / "model.pt"
    save_model_checkpoint(path, arch, model.state_dict(), epoch=4, rule="label_wave")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.sha256"]  # no temp file left
    torch.load(path, weights_only=True)  # loads without unpickling arbitrary objects
    loaded, payload = load_model_checkpoint(path, checked=True)  # its bytes match the sidecar's sha256
    assert payload["arch"] == arch
    assert payload["meta"] == {"epoch": 4, "rule": "label_wave"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    loaded.eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x)[0], model(x)[0])


def test_the_same_model_saved_twice_is_the_same_bytes(tmp_path):
    """DVC hashes and the registry's de-duplication need identical weights to give an identical file."""
    arch = architecture(ModelParams(arch="cnn", width=4), (1, 8, 8), 10)
    state = build_model(arch).state_dict()
    for name in ("a.pt", "b.pt"):
        save_model_checkpoint(tmp_path / name, arch, state, epoch=1)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_load_missing_checkpoint(tmp_path):
    with pytest.raises(LnlError, match="not found"):
        load_model_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", np.random.default_rng(0).bytes(256)])
def test_corrupt_checkpoint_raises(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(LnlError, match="model.pt: not a valid lnlflow model file"):
        load_model_checkpoint(path)


def test_truncated_checkpoint_raises(tmp_path):
    arch = architecture(ModelParams(arch="mlp", hidden=8), (4,), 3)
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, arch, build_model(arch).state_dict())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(LnlError, match="model.pt: not a valid lnlflow model file"):
        load_model_checkpoint(path)


def test_incompatible_checkpoint_raises(tmp_path):
    arch = architecture(ModelParams(arch="mlp", hidden=8), (4,), 3)
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, dict(arch, n_classes=5), build_model(arch).state_dict())
    with pytest.raises(LnlError, match="model.pt: not a valid lnlflow model file"):
        load_model_checkpoint(path)
