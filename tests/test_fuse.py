"""fuse()/unfuse(): layer swapping keeps weights, outputs, modes, requires_grad, dtype and names."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mixerkern import FusedFNetLayer, FusedgMLPLayer, FusedMixerLayer, fuse, unfuse
from mixerkern.models import create_model
from mixerkern.layers import FusedPatchEmbed, FusedPatchlessLayer
from mixerkern.reference import FNetLayer, MixerLayer, PatchEmbed, PatchlessLayer, gMLPLayer

TINY = dict(image_size=32, patch_size=8, dim=36, depth=3, token_hidden=11, channel_hidden=50,
            num_classes=5, final_norm=True, pos_embed=True)


def block_types(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, (MixerLayer, gMLPLayer, FNetLayer))]


def images(batch: int = 2, dtype=torch.float32) -> torch.Tensor:
    torch.manual_seed(10)
    return torch.randn(batch, 3, 32, 32, dtype=dtype)


def test_model_round_trip_keeps_outputs_names_and_parameters():
    torch.manual_seed(0)
    model = create_model("mixer-cifar100", fused=False, **TINY).eval()
    x = images()
    expected = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())

    assert fuse(model) is model
    assert block_types(model) == [FusedMixerLayer] * 3 and type(model.stem) is FusedPatchEmbed
    assert model.state_dict().keys() == state.keys()
    # The same Parameter objects (an optimizer built before fuse keeps working), values untouched.
    assert all(p is params[k] for k, p in model.named_parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert (model(x) - expected).abs().max() <= 1e-5 * expected.abs().max()

    assert unfuse(model) is model
    assert block_types(model) == [MixerLayer] * 3 and type(model.stem) is PatchEmbed
    assert model.state_dict().keys() == state.keys()
    assert torch.equal(model(x), expected)  # back to the very same reference math


@pytest.mark.parametrize("name, reference, fused", [("gmlp-cifar100", gMLPLayer, FusedgMLPLayer),
                                                    ("fnet-cifar100", FNetLayer, FusedFNetLayer)])
def test_other_families_round_trip(name, reference, fused):
    torch.manual_seed(0)
    model = create_model(name, fused=False, image_size=32, dim=36, depth=2, hidden=50).eval()
    x = images()
    expected = model(x)
    fuse(model)
    assert block_types(model) == [fused] * 2
    assert (model(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    unfuse(model)
    assert block_types(model) == [reference] * 2
    assert torch.equal(model(x), expected)


def test_bare_layer_round_trip():
    torch.manual_seed(1)
    layer = MixerLayer(num_patches=9, dim=20, token_hidden=7, channel_hidden=30, eps=1e-5,
                       approximate="tanh").eval()
    x = torch.randn(4, 9, 20)
    expected = layer(x)
    fused = fuse(layer)
    assert type(fused) is FusedMixerLayer and fused is not layer
    assert fused.config() == layer.config()
    assert not fused.training
    assert (fused(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    back = unfuse(fused)
    assert type(back) is MixerLayer and back.config() == layer.config()
    assert torch.equal(back(x), expected)


def test_fuse_is_idempotent_and_unfuse_of_reference_is_a_no_op():
    layer = FusedMixerLayer(num_patches=4, dim=8)
    assert fuse(layer) is layer
    reference = MixerLayer(num_patches=4, dim=8)
    assert unfuse(reference) is reference


def test_modes_and_requires_grad_are_preserved_per_module():
    torch.manual_seed(2)
    model = create_model("mixer-cifar100", fused=False, **TINY).train()
    model.blocks[1].eval()
    model.blocks[2].norm2.eval()
    model.blocks[0].mlp_tokens.fc1.weight.requires_grad_(False)
    model.blocks[2].norm1.requires_grad_(False)
    modes = {k: m.training for k, m in model.named_modules()}
    grads = {k: p.requires_grad for k, p in model.named_parameters()}
    assert len(set(modes.values())) == 2 and len(set(grads.values())) == 2  # the test has both kinds
    for convert in (fuse, unfuse):
        convert(model)
        assert {k: m.training for k, m in model.named_modules()} == modes
        assert {k: p.requires_grad for k, p in model.named_parameters()} == grads


def test_dtype_and_nested_containers_are_handled():
    torch.manual_seed(3)
    wrapper = nn.ModuleDict({
        "first": MixerLayer(num_patches=6, dim=10),
        "stack": nn.Sequential(nn.Identity(), nn.ModuleList([MixerLayer(num_patches=6, dim=10)])),
    }).double().eval()
    x = torch.randn(2, 6, 10, dtype=torch.float64)

    def run(m):
        return m["stack"][1][0](m["first"](x))

    expected = run(wrapper)
    fuse(wrapper)
    assert block_types(wrapper) == [FusedMixerLayer] * 2
    assert all(p.dtype == torch.float64 for p in wrapper.parameters())
    assert (run(wrapper) - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_training_step_after_fuse_updates_the_same_parameters():
    torch.manual_seed(4)
    # No final norm: under one, the token fc2 biases get a (structurally) zero gradient.
    model = create_model("mixer-cifar100", fused=False, **{**TINY, "dropout": 0.0, "final_norm": False})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse(model)
    model(images()).square().mean().backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "blocks.0.mlp_tokens.fc1.weight" in changed and len(changed) == len(before)


@pytest.mark.parametrize("convert", [fuse, unfuse])
def test_models_without_mixer_layers_are_untouched(convert):
    model = nn.Sequential(nn.Linear(3, 3), nn.GELU())
    names = [k for k, _ in model.named_modules()]
    assert convert(model) is model and [k for k, _ in model.named_modules()] == names


def test_patchless_models_round_trip():
    torch.manual_seed(0)
    model = create_model("patchless-mnist", fused=False, depth=2).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.gate.fill_(0.5)  # gates start at 0, which would hide the layers
    x = torch.randn(3, 1, 28, 28)
    expected = model(x)
    fuse(model)
    assert [type(b.layer) for b in model.blocks] == [FusedPatchlessLayer] * 2
    assert (model(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    unfuse(model)
    assert [type(b.layer) for b in model.blocks] == [PatchlessLayer] * 2
    assert torch.equal(model(x), expected)
