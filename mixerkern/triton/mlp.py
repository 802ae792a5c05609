"""Launchers of the two-layer MLPs: token mixing, channel mixing and their bare forms (token_mlp,
channel_mlp, with no LayerNorm and no residual), each forward and backward as a few fused GEMMs;
and channel mixing's post-norm form (channel_mixing_postnorm), the bare MLP plus residual with the
LayerNorm behind it (see postnorm_forward).

    forward:   H = GELU(fc1(LN(x)))                     (GEMM: LN prologue; bias + GELU epilogue)
               out = x + Drop(fc2(H))                   (GEMM: bias + dropout + residual epilogue)
    backward:  H, GELU' recomputed (as in forward) ; dZ = Drop(dout)
               dW2 = Σ dZ Hᵀ ; dA = (W2ᵀ dZ) ⊙ GELU'   (GEMM: gate epilogue)
               dW1 = Σ dA LN(x)ᵀ (LN prologue) ; dU = W1ᵀ dA ; dx = LN'(dU) + dout

The token MLP multiplies each sample from the left (W (hidden, P) @ X_b (P, D)) and needs no
transpose; the channel MLP flattens (B, P) into one M = B·P axis and multiplies from the right. Its
weight gradients are one GEMM over K = B·P; the token MLP's reduce over the batch inside the GEMM.
The dropout counter of element (b, p, d) is its flat index, as in the CPU kernels.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .gemm import gemm, row_stats
from .rows import apply_dropout, layernorm, layernorm_backward


class Settings(NamedTuple):
    eps: float | None
    act: str
    dropout_p: float
    seed: int


def settings(eps, approximate, dropout_p, seed) -> Settings:
    return Settings(eps, "gelu" if approximate == "none" else "gelu_tanh", dropout_p,
                    int(seed) if dropout_p > 0 else 0)


def _hidden(x, ln, fc1_weight, fc1_bias, s: Settings, token: bool, gelu_grad=None):
    """GELU(fc1(LN(x))) in x's dtype (and GELU' into gelu_grad), with the LN statistics it used."""
    batch, patches, dim = x.shape
    stats = row_stats(x, s.eps) if ln is not None else None
    prologue = dict(ln=(*stats, *ln)) if ln is not None else {}
    if token:
        h = x.new_empty(batch, fc1_weight.shape[0], dim)
        gemm(fc1_weight.expand(batch, -1, -1), x, h, **prologue, ln_on="b", bias=fc1_bias, act=s.act, grad=gelu_grad)
    else:
        h = x.new_empty(1, batch * patches, fc1_weight.shape[0])
        if ln is not None:
            prologue["ln"] = (stats[0].view(1, -1), stats[1].view(1, -1), *ln)
        gemm(x.view(1, batch * patches, dim), fc1_weight.t().unsqueeze(0), h, **prologue, ln_on="a",
             bias=fc1_bias, bias_on="col", act=s.act, grad=gelu_grad)
    return h, stats


def forward(x, ln, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s: Settings, token: bool):
    """ln = (weight, bias) for the Mixer blocks (LN and residual), None for the bare MLPs."""
    x = x.contiguous()
    batch, patches, dim = x.shape
    h, _ = _hidden(x, ln, fc1_weight, fc1_bias, s, token)
    out = torch.empty_like(x)
    drop = dict(dropout=(s.seed, s.dropout_p, 0, (patches * dim, dim, 1))) if s.dropout_p > 0 else {}
    residual = x if ln is not None else None
    if token:
        gemm(fc2_weight.expand(batch, -1, -1), h, out, bias=fc2_bias, residual=residual, **drop)
    else:
        flat = (1, batch * patches, dim)
        drop = dict(dropout=(s.seed, s.dropout_p, 0, (0, dim, 1))) if drop else {}
        gemm(h, fc2_weight.t().unsqueeze(0), out.view(flat), bias=fc2_bias, bias_on="col",
             residual=residual.view(flat) if residual is not None else None, **drop)
    return out


def backward(grad_out, x, ln, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s: Settings, token: bool):
    """Gradients of x, [ln weight, ln bias,] fc1 weight, fc1 bias, fc2 weight, fc2 bias."""
    x, grad_out = x.contiguous(), grad_out.contiguous()
    batch, patches, dim = x.shape
    hidden = fc1_weight.shape[0]
    shape_h = (batch, hidden, dim) if token else (1, batch * patches, hidden)
    gelu_grad = torch.empty(shape_h, dtype=torch.float32, device=x.device)
    h, stats = _hidden(x, ln, fc1_weight, fc1_bias, s, token, gelu_grad)
    dz = apply_dropout(grad_out, s.seed, s.dropout_p) if s.dropout_p > 0 else grad_out
    d_fc1_w, d_fc2_w = torch.empty_like(fc1_weight), torch.empty_like(fc2_weight)
    d_pre = x.new_empty(shape_h)
    du = torch.empty(x.shape, dtype=torch.float32 if ln is not None else x.dtype, device=x.device)
    if token:
        prologue = dict(ln=(*stats, *ln)) if ln is not None else {}
        gemm(dz, h.transpose(1, 2), d_fc2_w.unsqueeze(0), reduce_batch=True)
        gemm(fc2_weight.t().expand(batch, -1, -1), dz, d_pre, gate=gelu_grad)
        gemm(x, d_pre.transpose(1, 2), d_fc1_w.t().unsqueeze(0), **prologue, ln_on="a", reduce_batch=True)
        gemm(fc1_weight.t().expand(batch, -1, -1), d_pre, du)
        sum_dims = (0, 2)
    else:
        flat = (1, batch * patches, dim)
        prologue = dict(ln=(stats[0].view(1, -1), stats[1].view(1, -1), *ln)) if ln is not None else {}
        dz_flat = dz.reshape(flat)
        gemm(dz_flat.transpose(1, 2), h, d_fc2_w.unsqueeze(0))
        gemm(dz_flat, fc2_weight.unsqueeze(0), d_pre, gate=gelu_grad)
        gemm(d_pre.transpose(1, 2), x.view(flat), d_fc1_w.unsqueeze(0), **prologue, ln_on="b")
        gemm(d_pre, fc1_weight.unsqueeze(0), du.view(flat))
        sum_dims = (0, 1)
    d_fc1_b = d_pre.sum(sum_dims, dtype=torch.float32).to(fc1_bias.dtype)
    d_fc2_b = dz.sum(sum_dims, dtype=torch.float32).to(fc2_bias.dtype)
    if ln is None:
        return du, d_fc1_w, d_fc1_b, d_fc2_w, d_fc2_b
    dx, d_ln_w, d_ln_b = layernorm_backward(du, x, *stats, ln[0], residual_grad=grad_out)
    return dx, d_ln_w, d_ln_b, d_fc1_w, d_fc1_b, d_fc2_w, d_fc2_b


def _postnorm_sum(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s: Settings, gelu_grad=None):
    """Z = x + Drop(fc2(GELU(fc1(x)))) in fp32 (the LayerNorm's input), and the hidden activation."""
    batch, patches, dim = x.shape
    h, _ = _hidden(x, None, fc1_weight, fc1_bias, s, token=False, gelu_grad=gelu_grad)
    z = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    flat = (1, batch * patches, dim)
    drop = dict(dropout=(s.seed, s.dropout_p, 0, (0, dim, 1))) if s.dropout_p > 0 else {}
    gemm(h, fc2_weight.t().unsqueeze(0), z.view(flat), bias=fc2_bias, bias_on="col", residual=x.view(flat), **drop)
    return z, h


def postnorm_forward(x, ln, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s: Settings):
    """out = LN(Z), Z = x + Drop(fc2(GELU(fc1(x)))) (the channel MLP, FNet's feed-forward sub-layer)."""
    x = x.contiguous()
    z, _ = _postnorm_sum(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s)
    return layernorm(z, *ln, s.eps, x.dtype)


def postnorm_backward(grad_out, x, ln, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s: Settings):
    """Z recomputed; dZ = LN'(dout); the bare MLP's backward on dZ; dx = dZ + the MLP's dx."""
    x, grad_out = x.contiguous(), grad_out.contiguous()
    z, _ = _postnorm_sum(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s)
    dz, d_ln_w, d_ln_b = layernorm_backward(grad_out, z, *row_stats(z, s.eps), ln[0], dx_dtype=torch.float32)
    du, *fc_grads = backward(dz.to(x.dtype), x, None, fc1_weight, fc1_bias, fc2_weight, fc2_bias, s, token=False)
    return ((du.float() + dz).to(x.dtype), d_ln_w, d_ln_b, *fc_grads)


def entry_points(token: bool, normalized: bool, post_norm: bool = False):
    """The (forward, backward) kernels of one op, with its schema's positional arguments:
    (x, [ln_weight, ln_bias,] fc1_weight, fc1_bias, fc2_weight, fc2_bias, [eps,] approximate, dropout_p, seed)."""
    def split(args):
        if normalized:
            ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed = args
            return (ln_w, ln_b), (w1, b1, w2, b2), settings(eps, approximate, p, seed)
        w1, b1, w2, b2, approximate, p, seed = args
        return None, (w1, b1, w2, b2), settings(None, approximate, p, seed)

    def forward_kernel(x, *args):
        ln, fcs, s = split(args)
        return postnorm_forward(x, ln, *fcs, s) if post_norm else forward(x, ln, *fcs, s, token)

    def backward_kernel(grad_out, x, *args):
        ln, fcs, s = split(args)
        return postnorm_backward(grad_out, x, ln, *fcs, s) if post_norm else backward(grad_out, x, ln, *fcs, s, token)

    return forward_kernel, backward_kernel
