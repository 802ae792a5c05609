"""FusedMixerLayer against the reference MixerLayer: weights, forward/backward, compile, autocast."""
import pytest
import torch

from mixerkern import FusedMixerLayer
from mixerkern.reference import MixerLayer
from mixing_checks import rel_err


def pair(**cfg):
    ref = MixerLayer(**cfg)
    fused = FusedMixerLayer(**cfg)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("cfg", [dict(num_patches=196, dim=100, token_hidden=37, channel_hidden=50),
                                 dict(num_patches=64, dim=256, token_hidden=64, channel_hidden=64,
                                      approximate="tanh", eps=1e-5)])
def test_layer_forward_backward_match_reference(cfg):
    ref, fused = pair(**cfg)
    x = torch.randn(3, cfg["num_patches"], cfg["dim"])
    g = torch.randn_like(x)
    outs, grads = [], []
    for layer in (ref, fused):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out.backward(g)
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad for p in layer.parameters()])
    assert rel_err(outs[1], outs[0]) <= 1e-5
    for gf, gr in zip(grads[1], grads[0]):
        assert rel_err(gf, gr) <= 1e-4


def test_state_dict_round_trip_and_timm_names():
    ref, fused = pair(num_patches=16, dim=24)
    assert list(ref.state_dict()) == list(fused.state_dict())
    assert {k.rsplit(".", 1)[0] for k in fused.state_dict()} == {
        "norm1", "mlp_tokens.fc1", "mlp_tokens.fc2", "norm2", "mlp_channels.fc1", "mlp_channels.fc2"}
    back = MixerLayer(**fused.config())
    back.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(2, 16, 24)
    assert rel_err(fused(x), back(x)) <= 1e-5
    assert ref.token_hidden == 12 and ref.channel_hidden == 96  # paper/timm defaults: D/2 and 4D


def test_compile_fullgraph_no_graph_break():
    ref, fused = pair(num_patches=49, dim=40, token_hidden=20, channel_hidden=80, dropout=0.1)
    x = torch.randn(2, 49, 40, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(fused, fullgraph=True)
    fused.eval()
    assert rel_err(compiled(x), ref.eval()(x)) <= 1e-5
    fused.train()
    compiled(x).sum().backward()  # training mode with dropout also traces as one graph
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_autocast_bf16_layer():
    ref, fused = pair(num_patches=64, dim=64, token_hidden=32, channel_hidden=128)
    x = torch.randn(2, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused(x)
        ref_out = ref(x)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, ref_out) < 2e-2


def test_dropout_uses_layer_seed_and_eval_disables_it():
    _, fused = pair(num_patches=16, dim=32, dropout=0.5)
    x = torch.randn(4, 16, 32)
    fused.train()
    torch.manual_seed(3)
    a = fused(x)
    torch.manual_seed(3)
    assert torch.equal(a, fused(x))
    fused.eval()
    assert torch.equal(fused(x), fused(x))
