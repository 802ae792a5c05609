"""gMLP's spatial gating unit: the CUDA kernels of mixerkern::spatial_gating.

    [U | V] = Drop(GELU(x)),  out = U ⊙ (W LN(V) + b)      x (B, P, 2E), W (P, P)

forward:  a row kernel splits x into U and V (GELU, dropout) and takes V's LN statistics; one GEMM
          then does W @ LN(V) (LN prologue) + b, times U (gate epilogue).
backward: the row kernel again, now writing dZ = dout ⊙ U; Z = W LN(V) + b is recomputed;
          dW = Σ_b dZ_b LN(V_b)ᵀ (one GEMM, reducing the batch, LN prologue); dV̂ = Wᵀ dZ;
          a last row kernel forms dU = dout ⊙ Z and dV = LN'(dV̂) and multiplies both by
          mask · GELU'(x), so dx is written once and GELU' never stored.
The dropout counter of element (b, p, j) of x is its flat index, as in the CPU kernels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .gemm import SEED_ARGS, dropout_args, dropout_keep, gelu, gemm
from .mlp import settings
from .rows import ln_backward_at, row_launch, rows_per_program


@triton.jit
def _half(x_row, row, cols, mask, width, seed_lo, seed_hi, threshold, scale,
          DROPOUT: tl.constexpr, TANH: tl.constexpr):
    """Drop(GELU(x)) at columns ``cols`` of a row of x (width 2E) and its derivative mask · GELU'(x)."""
    x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
    h, dh = gelu(x, TANH)
    if DROPOUT:
        factor = tl.where(dropout_keep(seed_lo, seed_hi, row * width + cols, threshold), scale, 0.0)
        h, dh = h * factor, dh * factor
    return h, dh


@triton.jit(do_not_specialize=SEED_ARGS)
def gate_halves_kernel(x_ptr, g_ptr, u_ptr, v_ptr, mean_ptr, rstd_ptr, rows, half, eps,
                       seed_lo, seed_hi, threshold, scale,
                       SCALE_BY_G: tl.constexpr, DROPOUT: tl.constexpr, TANH: tl.constexpr,
                       ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """U (or dout ⊙ U when SCALE_BY_G) and V, in x's dtype, and V's LN statistics (of the stored V)."""
    cols = tl.arange(0, BLOCK)
    mask = cols < half
    for i in range(ROWS):
        row = tl.program_id(0).to(tl.int64) * ROWS + i
        if row < rows:
            x_row = x_ptr + row * 2 * half
            u, _ = _half(x_row, row, cols, mask, 2 * half, seed_lo, seed_hi, threshold, scale, DROPOUT, TANH)
            v, _ = _half(x_row, row, cols + half, mask, 2 * half, seed_lo, seed_hi, threshold, scale,
                         DROPOUT, TANH)
            if SCALE_BY_G:
                u *= tl.load(g_ptr + row * half + cols, mask=mask, other=0.0).to(tl.float32)
            v = v.to(v_ptr.dtype.element_ty)
            tl.store(u_ptr + row * half + cols, u.to(u_ptr.dtype.element_ty), mask=mask)
            tl.store(v_ptr + row * half + cols, v, mask=mask)
            v = tl.where(mask, v.to(tl.float32), 0.0)
            mean = tl.sum(v, axis=0) / half
            d = tl.where(mask, v - mean, 0.0)
            tl.store(mean_ptr + row, mean)
            tl.store(rstd_ptr + row, 1 / tl.sqrt(tl.sum(d * d, axis=0) / half + eps))


@triton.jit(do_not_specialize=SEED_ARGS)
def gating_backward_kernel(x_ptr, g_ptr, z_ptr, dvn_ptr, v_ptr, mean_ptr, rstd_ptr, w_ptr, dx_ptr, dw_ptr, db_ptr,
                           rows, half, seed_lo, seed_hi, threshold, scale,
                           DROPOUT: tl.constexpr, TANH: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < half
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    db = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(ROWS):
        row = pid.to(tl.int64) * ROWS + i
        if row < rows:
            x_row = x_ptr + row * 2 * half
            _, du_dx = _half(x_row, row, cols, mask, 2 * half, seed_lo, seed_hi, threshold, scale, DROPOUT, TANH)
            _, dv_dx = _half(x_row, row, cols + half, mask, 2 * half, seed_lo, seed_hi, threshold, scale,
                             DROPOUT, TANH)
            at = row * half + cols
            dv, dvn, vhat = ln_backward_at(dvn_ptr, v_ptr, mean_ptr, rstd_ptr, row, at, w, mask, half)
            g = tl.load(g_ptr + at, mask=mask, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + at, mask=mask, other=0.0)
            tl.store(dx_ptr + row * 2 * half + cols, (g * z * du_dx).to(dx_ptr.dtype.element_ty), mask=mask)
            tl.store(dx_ptr + row * 2 * half + half + cols, (dv * dv_dx).to(dx_ptr.dtype.element_ty), mask=mask)
            dw += dvn * vhat
            db += dvn
    tl.store(dw_ptr + pid * half + cols, dw, mask=mask)
    tl.store(db_ptr + pid * half + cols, db, mask=mask)


# ---- launchers --------------------------------------------------------------------------------------

def _gate_halves(x, s, grad_out=None):
    batch, patches, hidden = x.shape
    half, rows = hidden // 2, batch * patches
    u, v = x.new_empty(batch, patches, half), x.new_empty(batch, patches, half)
    mean = torch.empty(batch, patches, dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    if rows:
        per = rows_per_program(rows)
        gate_halves_kernel[(triton.cdiv(rows, per),)](
            x, grad_out if grad_out is not None else x, u, v, mean, rstd, rows, half, s.eps, *dropout_args(s.seed, s.dropout_p),
            SCALE_BY_G=grad_out is not None, DROPOUT=s.dropout_p > 0, TANH=s.act == "gelu_tanh",
            ROWS=per, **row_launch(half))
    return u, v, mean, rstd


def forward(x, ln_weight, ln_bias, proj_weight, proj_bias, eps, approximate, dropout_p, seed):
    x = x.contiguous()
    s = settings(eps, approximate, dropout_p, seed)
    u, v, mean, rstd = _gate_halves(x, s)
    out = torch.empty_like(u)
    gemm(proj_weight.expand(x.shape[0], -1, -1), v, out, ln=(mean, rstd, ln_weight, ln_bias), ln_on="b",
         bias=proj_bias, gate=u)
    return out


def backward(grad_out, x, ln_weight, ln_bias, proj_weight, proj_bias, eps, approximate, dropout_p, seed):
    x, grad_out = x.contiguous(), grad_out.contiguous()
    s = settings(eps, approximate, dropout_p, seed)
    batch, patches, hidden = x.shape
    dz, v, mean, rstd = _gate_halves(x, s, grad_out)
    ln = (mean, rstd, ln_weight, ln_bias)
    z = torch.empty(dz.shape, dtype=torch.float32, device=x.device)
    gemm(proj_weight.expand(batch, -1, -1), v, z, ln=ln, ln_on="b", bias=proj_bias)
    d_proj_w = torch.empty_like(proj_weight)
    gemm(v, dz.transpose(1, 2), d_proj_w.t().unsqueeze(0), ln=ln, ln_on="a", reduce_batch=True)
    d_proj_b = dz.sum((0, 2), dtype=torch.float32).to(proj_bias.dtype)
    dvn = torch.empty_like(z)
    gemm(proj_weight.t().expand(batch, -1, -1), dz, dvn)
    rows, half = batch * patches, hidden // 2
    per = rows_per_program(rows)
    programs = triton.cdiv(rows, per)
    dx = torch.empty_like(x)
    d_ln_w = torch.zeros(max(programs, 1), half, dtype=torch.float32, device=x.device)
    d_ln_b = torch.zeros_like(d_ln_w)
    if rows:
        gating_backward_kernel[(programs,)](
            x, grad_out, z, dvn, v, mean, rstd, ln_weight, dx, d_ln_w, d_ln_b, rows, half, *dropout_args(s.seed, s.dropout_p),
            DROPOUT=s.dropout_p > 0, TANH=s.act == "gelu_tanh", ROWS=per, **row_launch(half))
    return (dx, d_ln_w.sum(0).to(ln_weight.dtype), d_ln_b.sum(0).to(ln_bias.dtype), d_proj_w, d_proj_b)
