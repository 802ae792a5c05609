"""Checks shared by every fused op's tests (each op's test file parametrizes them).

Error metric everywhere: ||a - b|| / ||b|| over the whole tensor.
"""
from __future__ import annotations

import torch

from mixerkern.ops._dropout import dropout_mask, draw_seed

# Forward / gradient tolerances per dtype (bf16 is judged against float64 truth instead).
FP32_FWD_RTOL, FP32_GRAD_RTOL = 1e-5, 1e-4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make_mixing_inputs(op_name: str, batch: int, patches: int, dim: int, hidden: int, dtype=torch.float32):
    """Fresh random x and token/channel-mixing parameters (non-trivial LN affine and biases)."""
    mixed = patches if op_name == "token_mixing" else dim
    x = torch.randn(batch, patches, dim, dtype=torch.float64)
    params = [1 + 0.3 * torch.randn(dim, dtype=torch.float64), 0.2 * torch.randn(dim, dtype=torch.float64),
              torch.randn(hidden, mixed, dtype=torch.float64) / mixed**0.5, 0.5 * torch.randn(hidden, dtype=torch.float64),
              torch.randn(mixed, hidden, dtype=torch.float64) / hidden**0.5, 0.5 * torch.randn(mixed, dtype=torch.float64)]
    return x.to(dtype), [p.to(dtype) for p in params]


def make_mlp_inputs(op_name: str, batch: int, rows: int, cols: int, hidden: int, dtype=torch.float32):
    """Fresh random x and bare token/channel-MLP parameters (fc1 and fc2 only)."""
    x, params = make_mixing_inputs(op_name.replace("_mlp", "_mixing"), batch, rows, cols, hidden, dtype)
    return x, params[2:]


def make_gating_inputs(batch: int, patches: int, hidden: int, dtype=torch.float32):
    """Fresh random fc1 pre-activation x (B, P, hidden) and spatial-gating parameters. The proj
    weight is O(1/sqrt(P)), not timm's near-zero init, so the spatial product really matters."""
    half = hidden // 2
    x = torch.randn(batch, patches, hidden, dtype=torch.float64)
    params = [1 + 0.3 * torch.randn(half, dtype=torch.float64), 0.2 * torch.randn(half, dtype=torch.float64),
              torch.randn(patches, patches, dtype=torch.float64) / patches**0.5,
              1 + 0.5 * torch.randn(patches, dtype=torch.float64)]
    return x.to(dtype), [p.to(dtype) for p in params]


def make_fourier_inputs(batch: int, tokens: int, dim: int, dtype=torch.float32):
    """Fresh random x (B, tokens, dim) and the LayerNorm's affine parameters."""
    x = torch.randn(batch, tokens, dim, dtype=torch.float64)
    params = [1 + 0.3 * torch.randn(dim, dtype=torch.float64), 0.2 * torch.randn(dim, dtype=torch.float64)]
    return x.to(dtype), [p.to(dtype) for p in params]


def make_block_inputs(batch: int, patches: int, dim: int, token_hidden: int, channel_hidden: int,
                      dtype=torch.float32, depth: int = 1):
    """Fresh random x and ``depth`` Mixer layers' token- then channel-mixing parameters, flat (mixer_blocks)."""
    params = []
    for _ in range(depth):
        x, token = make_mixing_inputs("token_mixing", batch, patches, dim, token_hidden, dtype)
        _, channel = make_mixing_inputs("channel_mixing", batch, patches, dim, channel_hidden, dtype)
        params += token + channel
    return x, params


def make_patch_inputs(batch: int, chans: int, height: int, width: int, patch: int, dim: int, dtype=torch.float32):
    """Fresh random images (B, C, H, W) and a patch embedding's Conv2d weight (dim, C, p, p) and bias."""
    x = torch.randn(batch, chans, height, width, dtype=torch.float64)
    params = [torch.randn(dim, chans, patch, patch, dtype=torch.float64) / (chans * patch * patch)**0.5,
              0.5 * torch.randn(dim, dtype=torch.float64)]
    return x.to(dtype), [p.to(dtype) for p in params]


def random_grad_out(op, x, params):
    return torch.randn(op.out_shape(x, params), dtype=x.dtype, device=x.device)


def run_with_grads(fn, x, params, grad_out, **kw):
    """Output and the gradients of (x, *params) for the given upstream gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, *params)]
    out = fn(*leaves, **kw)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), grads


def fused_vs_reference(op, x, params, grad_out, mask=None, seed=None, dropout_p=0.0, train=False, **kw):
    """(fused out, fused grads), (reference out, reference grads) for one op and one input.
    ``train``: through the op's training forward (which saves activations for its backward)."""
    if seed is None and not train:
        fused = run_with_grads(op, x, params, grad_out, dropout_p=dropout_p, **kw)
    else:  # call the registered op directly with a known seed, so the mask can be reproduced
        forward = (lambda *a: op.train_op(*a)[0]) if train else op.forward_op
        fused = run_with_grads(lambda *t, **k: forward(*t, *op.settings(dropout_p=dropout_p, seed=seed, **k)),
                               x, params, grad_out, **kw)
    ref = run_with_grads(op.reference, x, params, grad_out, **op.reference_kwargs(mask=mask, **kw))
    return fused, ref


def assert_close_to_reference(op, x, params, dropout_p=0.0, approximate="none", eps=1e-6, train=False):
    grad_out = random_grad_out(op, x, params)
    seed = draw_seed() if dropout_p > 0 else None
    mask = dropout_mask(seed, x.shape, dropout_p, x.dtype) if dropout_p > 0 else None
    (out, grads), (ref_out, ref_grads) = fused_vs_reference(
        op, x, params, grad_out, mask=mask, seed=seed, dropout_p=dropout_p, approximate=approximate, train=train,
        **({"eps": eps} if op.normalized else {}))
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    assert rel_err(out, ref_out) <= FP32_FWD_RTOL, f"forward: {rel_err(out, ref_out):.2e}"
    for name, g, rg in zip(("x",) + op.param_names, grads, ref_grads):
        assert g.shape == rg.shape and g.dtype == rg.dtype, name
        # Absolute floor for gradients that are exactly zero in exact math (e.g. LN weight when dim=1).
        err, scale = (g.double() - rg.double()).norm().item(), rg.double().norm().item()
        assert err <= FP32_GRAD_RTOL * scale + 1e-6, f"grad {name}: {err / max(scale, 1e-30):.2e} relative"


def assert_error_budget(op, x64, params64, approximate="none", dtype=torch.bfloat16, budget=2.0, run=None):
    """Error in ``dtype`` against float64 truth at most ``budget`` x the reference's own error in it.

    ``run(x, params, grad_out, approximate)`` gives the output and gradients under test (default:
    the op through its public entry point)."""
    grad64 = random_grad_out(op, x64, params64)
    kw = op.reference_kwargs(approximate=approximate)
    truth = run_with_grads(op.reference, x64, params64, grad64, **kw)
    low = lambda ts: [t.to(dtype) for t in ts]  # noqa: E731
    xl, pl, gl = x64.to(dtype), low(params64), grad64.to(dtype)
    run = run or (lambda x, p, g, a: run_with_grads(op, x, p, g, approximate=a))
    fused = run(xl, pl, gl, approximate)
    ref = run_with_grads(op.reference, xl, pl, gl, **kw)
    pairs = [("out", fused[0], ref[0], truth[0])] + [
        (n, f, r, t) for n, f, r, t in zip(("x",) + op.param_names, fused[1], ref[1], truth[1])]
    for name, f, r, t in pairs:
        assert f.dtype == dtype, name
        fe, re = rel_err(f, t), rel_err(r, t)
        assert fe <= budget * re, f"{name}: {dtype} error {fe:.2e} > {budget} x reference error {re:.2e}"
