"""Patchless Mixer: the layer (fused vs reference), the gated classifier, the autoencoder, presets and training."""
import json

import pytest
import torch

from mixerkern.layers import FusedPatchlessLayer
from mixerkern.models import PRESETS, PatchlessAutoencoder, PatchlessMixer, create_model, flops_per_image, load, save
from mixerkern.reference import PatchlessLayer
from mixerkern.train import run
from op_checks import FP32_FWD_RTOL, FP32_GRAD_RTOL, rel_err
from test_train import config, mnist_dir  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.filterwarnings("ignore:.*is not the official")


def randomized(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights everywhere (gates included), so every path matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) / max(p.shape[-1], 1) ** 0.5 if p.dim() else torch.tensor(0.7))
    return module


@pytest.mark.parametrize("height, width", [(28, 28), (32, 96), (7, 13), (1, 5)])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_fused_layer_matches_reference(height, width, approximate):
    ref = randomized(PatchlessLayer(height, width, approximate))
    fused = FusedPatchlessLayer(height, width, approximate)
    fused.load_state_dict(ref.state_dict())
    x, g = torch.randn(3, height, width), torch.randn(3, height, width)
    results = []
    for layer in (fused, ref):
        xl = x.clone().requires_grad_()
        out = layer(xl)
        out.backward(g)
        results.append((out.detach(), xl.grad, [p.grad for p in layer.parameters()]))
    (out, dx, grads), (ref_out, ref_dx, ref_grads) = results
    assert rel_err(out, ref_out) <= FP32_FWD_RTOL
    assert rel_err(dx, ref_dx) <= FP32_GRAD_RTOL
    for name, a, b in zip(dict(fused.named_parameters()), grads, ref_grads):
        assert rel_err(a, b) <= FP32_GRAD_RTOL, name


def test_layer_names_follow_the_issue_and_errors_name_the_shape():
    layer = FusedPatchlessLayer(28, 28)
    assert sorted(layer.state_dict()) == sorted(f"mlp_{a}.fc{i}.{p}" for a in ("height", "width") for i in (1, 2)
                                                for p in ("weight", "bias"))
    with pytest.raises(ValueError, match=r"x must have shape \(B, height, width\) = \(B, 28, 28\)"):
        layer(torch.randn(2, 28, 27))


def test_hwc_reshape_and_its_inverse():
    model = PatchlessAutoencoder(image_size=32, in_chans=3, depth=0)
    x = torch.randn(2, 3, 32, 32)
    rows = model.to_rows(x)
    assert rows.shape == (2, 32, 96)
    b, c, i, j = 1, 2, 5, 7
    assert rows[b, i, j * 3 + c] == x[b, c, i, j]
    assert torch.equal(model.from_rows(rows), x)
    assert torch.equal(model(x), x)  # no layers: the identity
    with pytest.raises(ValueError, match=r"x must have shape \(B, in_chans, height, width\) = \(B, 3, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))


def test_gated_classifier_starts_as_identity_then_uses_its_layers():
    model = PatchlessMixer(image_size=12, in_chans=2, num_classes=5, depth=3)
    h = torch.randn(4, 12, 24)
    assert all(b.gate.item() == 0.0 for b in model.blocks)
    assert torch.equal(model.blocks(h), h)
    with torch.no_grad():
        model.blocks[1].gate.fill_(0.5)
    expected = h + 0.5 * model.blocks[1].layer(h)
    assert torch.allclose(model.blocks(h), expected)
    logits = model(torch.randn(4, 2, 12, 12))
    assert logits.shape == (4, 5)
    assert model.head.fc.in_features == 12 + 24  # one value per row plus one per column


@pytest.mark.parametrize("name, depth, rows", [("patchless-mnist", 16, (28, 28)), ("patchless-cifar10", 32, (32, 96)),
                                               ("patchless-ae-mnist", 2, (28, 28))])
def test_presets(name, depth, rows):
    fused, ref = create_model(name), create_model(name, fused=False)
    stack = fused.layers if name.startswith("patchless-ae") else fused.blocks
    assert len(stack) == depth and (fused.height, fused.width) == rows
    assert {k: v.shape for k, v in fused.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert fused.config == ref.config == {"name": name, **PRESETS[name]}
    assert create_model(**fused.config).config == fused.config
    assert flops_per_image(name) == fused.gemm_flops() > 0


def test_fused_and_reference_models_agree_and_checkpoints_round_trip(tmp_path):
    for name in ("patchless-mnist", "patchless-ae-mnist"):
        ref = randomized(create_model(name, fused=False, depth=2))
        fused = create_model(name, depth=2)
        fused.load_state_dict(ref.state_dict())
        x = torch.randn(3, 1, 28, 28)
        assert rel_err(fused(x), ref(x)) <= FP32_FWD_RTOL
        loaded = load(save(fused, tmp_path / f"{name}.safetensors"))
        assert type(loaded) is type(fused) and rel_err(loaded(x), ref(x)) <= FP32_FWD_RTOL


def test_autoencoder_trains_with_mse_and_writes_rmse_and_a_reconstruction_grid(mnist_dir, tmp_path):
    out = tmp_path / "ae"
    test = run(config(mnist_dir, out, model="patchless-ae-mnist", overrides={}, epochs=3, lr=3e-3, batch_size=50))
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["val_rmse"] < 0.5 * history[0]["val_rmse"]
    assert abs(history[-1]["val_rmse"] - history[-1]["val_loss"] ** 0.5) < 1e-9
    assert 0 < test["test_rmse"] < 0.2
    assert (out / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "metrics.csv").read_text().splitlines()[0].split(",")[:5] == [
        "epoch", "loss", "rmse", "val_loss", "val_rmse"]


def test_patchless_classifier_learns(mnist_dir, tmp_path):
    test = run(config(mnist_dir, tmp_path / "cls", model="patchless-mnist", overrides={"depth": 2}, epochs=3,
                      lr=3e-3))
    assert test["test_acc"] >= 0.9
