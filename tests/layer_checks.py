"""Checks shared by the fused-layer tests: a fused layer against its reference twin."""
from __future__ import annotations

import torch

from op_checks import rel_err


def pair(ref_cls, fused_cls, **cfg):
    """A reference layer and a fused one holding the same weights."""
    ref, fused = ref_cls(**cfg), fused_cls(**cfg)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def assert_forward_backward_match(ref, fused, x):
    g = torch.randn_like(x)
    outs, grads = [], []
    for layer in (ref, fused):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out.backward(g)
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad for p in layer.parameters()])
    assert rel_err(outs[1], outs[0]) <= 1e-5
    names = ["x"] + [n for n, _ in fused.named_parameters()]
    for name, gf, gr in zip(names, grads[1], grads[0]):
        assert rel_err(gf, gr) <= 1e-4, name


def assert_state_dict_round_trip(ref_cls, fused, x):
    back = ref_cls(**fused.config())
    back.load_state_dict(fused.state_dict(), strict=True)
    assert list(back.state_dict()) == list(fused.state_dict())
    assert rel_err(fused(x), back(x)) <= 1e-5


def assert_compiles_fullgraph(ref, fused, x):
    x = x.clone().requires_grad_()
    torch._dynamo.reset()
    compiled = torch.compile(fused, fullgraph=True)
    fused.eval()
    assert rel_err(compiled(x), ref.eval()(x)) <= 1e-5
    fused.train()
    compiled(x).sum().backward()  # training mode with dropout also traces as one graph
    assert x.grad is not None and torch.isfinite(x.grad).all()


def assert_autocast_bf16(ref, fused, x, out_dtype):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused(x)
        ref_out = ref(x)
    assert out.dtype == out_dtype
    assert rel_err(out, ref_out) < 2e-2


def assert_dropout_seeded(fused, x):
    fused.train()
    torch.manual_seed(3)
    a = fused(x)
    torch.manual_seed(3)
    assert torch.equal(a, fused(x))
    assert not torch.equal(a, fused(x))
    fused.eval()
    assert torch.equal(fused(x), fused(x))
