"""FusedgMLPLayer against the reference gMLPLayer: weights, forward/backward, compile, autocast."""
import functools

import pytest
import torch

from layer_checks import (assert_autocast_bf16, assert_compiles_fullgraph, assert_dropout_seeded,
                          assert_forward_backward_match, assert_state_dict_round_trip)
from layer_checks import pair as _pair
from mixerkern import FusedgMLPLayer
from mixerkern.reference import gMLPLayer


def pair(**cfg):
    ref, fused = _pair(gMLPLayer, FusedgMLPLayer, **cfg)
    # timm's near-identity gate init (weight ~ 1e-6) would hide errors in the spatial product.
    torch.nn.init.normal_(ref.mlp_channels.gate.proj.weight, std=cfg["num_patches"] ** -0.5)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("cfg", [dict(num_patches=196, dim=100, hidden=74),
                                 dict(num_patches=64, dim=256, hidden=512, approximate="tanh", eps=1e-5,
                                      gate_eps=1e-6)])
def test_layer_forward_backward_match_reference(cfg):
    ref, fused = pair(**cfg)
    assert_forward_backward_match(ref, fused, torch.randn(3, cfg["num_patches"], cfg["dim"]))


def test_state_dict_round_trip_timm_names_and_init():
    ref, fused = _pair(gMLPLayer, FusedgMLPLayer, num_patches=16, dim=24)
    assert list(fused.state_dict()) == [
        "norm.weight", "norm.bias", "mlp_channels.fc1.weight", "mlp_channels.fc1.bias",
        "mlp_channels.gate.norm.weight", "mlp_channels.gate.norm.bias", "mlp_channels.gate.proj.weight",
        "mlp_channels.gate.proj.bias", "mlp_channels.fc2.weight", "mlp_channels.fc2.bias"]
    assert ref.hidden == 144 and ref.mlp_channels.fc2.in_features == 72  # timm default: 6 D, halved by the gate
    gate = ref.mlp_channels.gate
    assert torch.equal(gate.proj.bias, torch.ones(16)) and gate.proj.weight.abs().max() < 1e-4
    assert_state_dict_round_trip(gMLPLayer, fused, torch.randn(2, 16, 24))


def test_gate_eps_is_separate_from_block_eps():
    layer = gMLPLayer(num_patches=4, dim=8, eps=1e-6, gate_eps=1e-5)
    assert layer.norm.eps == 1e-6 and layer.mlp_channels.gate.norm.eps == 1e-5
    assert gMLPLayer(num_patches=4, dim=8, eps=1e-4).mlp_channels.gate.norm.eps == 1e-4


def test_compile_fullgraph_no_graph_break():
    ref, fused = pair(num_patches=49, dim=40, hidden=60, dropout=0.1)
    assert_compiles_fullgraph(ref, fused, torch.randn(2, 49, 40))


def test_autocast_bf16_layer():
    ref, fused = pair(num_patches=64, dim=64, hidden=128)
    # As in the reference, the residual add promotes back to x's float32.
    assert_autocast_bf16(ref, fused, torch.randn(2, 64, 64), torch.float32)


def test_dropout_uses_layer_seed_and_eval_disables_it():
    _, fused = pair(num_patches=16, dim=32, hidden=64, dropout=0.5)
    assert_dropout_seeded(fused, torch.randn(4, 16, 32))


@pytest.mark.parametrize("hidden", [7, 0])
def test_hidden_that_cannot_split_is_rejected(hidden):
    with pytest.raises(ValueError, match=r"hidden must be even"):
        gMLPLayer(num_patches=4, dim=8, hidden=hidden)


def test_mismatched_num_patches_is_a_clear_error():
    _, fused = pair(num_patches=16, dim=32, hidden=64)
    with pytest.raises(ValueError, match=r"proj_weight must have shape \(15, 15\)"):
        fused(torch.randn(2, 15, 32))
