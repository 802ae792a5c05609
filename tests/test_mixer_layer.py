"""FusedMixerLayer against the reference MixerLayer: weights, forward/backward, compile, autocast."""
import functools

import pytest
import torch

from layer_checks import (assert_autocast_bf16, assert_compiles_fullgraph, assert_dropout_seeded,
                          assert_forward_backward_match, assert_state_dict_round_trip)
from layer_checks import pair as _pair
from mixerkern import FusedMixerLayer
from mixerkern.reference import MixerLayer

pair = functools.partial(_pair, MixerLayer, FusedMixerLayer)


@pytest.mark.parametrize("cfg", [dict(num_patches=196, dim=100, token_hidden=37, channel_hidden=50),
                                 dict(num_patches=64, dim=256, token_hidden=64, channel_hidden=64,
                                      approximate="tanh", eps=1e-5)])
def test_layer_forward_backward_match_reference(cfg):
    ref, fused = pair(**cfg)
    assert_forward_backward_match(ref, fused, torch.randn(3, cfg["num_patches"], cfg["dim"]))


def test_state_dict_round_trip_and_timm_names():
    ref, fused = pair(num_patches=16, dim=24)
    assert {k.rsplit(".", 1)[0] for k in fused.state_dict()} == {
        "norm1", "mlp_tokens.fc1", "mlp_tokens.fc2", "norm2", "mlp_channels.fc1", "mlp_channels.fc2"}
    assert_state_dict_round_trip(MixerLayer, fused, torch.randn(2, 16, 24))
    assert ref.token_hidden == 12 and ref.channel_hidden == 96  # paper/timm defaults: D/2 and 4D


def test_compile_fullgraph_no_graph_break():
    ref, fused = pair(num_patches=49, dim=40, token_hidden=20, channel_hidden=80, dropout=0.1)
    assert_compiles_fullgraph(ref, fused, torch.randn(2, 49, 40))


def test_autocast_bf16_layer():
    ref, fused = pair(num_patches=64, dim=64, token_hidden=32, channel_hidden=128)
    # The fused ops run whole in bf16, residual included, so the output is bf16.
    assert_autocast_bf16(ref, fused, torch.randn(2, 64, 64), torch.bfloat16)


def test_dropout_uses_layer_seed_and_eval_disables_it():
    _, fused = pair(num_patches=16, dim=32, dropout=0.5)
    assert_dropout_seeded(fused, torch.randn(4, 16, 32))
