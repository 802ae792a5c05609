"""Row-wise Triton kernels the ops share: LayerNorm forward and backward, and the dropout mask
applied to an incoming gradient. One program owns ROWS whole rows (the row fits one block, so
LayerNorm statistics need no second pass over memory), in fp32 whatever the storage dtype.

LayerNorm backward, for y = x̂ w + c with x̂ = (x - μ) r and r = 1/sqrt(var + eps):
    dx = r (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)),  ĝ = dy w;   dw = Σ_rows dy x̂,  dc = Σ_rows dy.
The column sums are written per program and finished by a small torch sum (deterministic, no atomics).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .gemm import SEED_ARGS, dropout_args, dropout_keep

MAX_ROW = 16384  # widest row one program holds in registers


@triton.jit
def ln_backward_row(dy, xhat, rstd, w, mask, n):
    """dx of one row (fp32 vectors; masked lanes must hold 0 in dy and xhat)."""
    g = tl.where(mask, dy * w, 0.0)
    mean_g = tl.sum(g, axis=0) / n
    mean_gx = tl.sum(g * xhat, axis=0) / n
    return rstd * (g - mean_g - xhat * mean_gx)


@triton.jit
def ln_backward_at(dy_ptr, x_ptr, mean_ptr, rstd_ptr, row, at, w, mask, n):
    """(dx, dy, x̂) of the row ``row`` of LN's input x whose elements sit at offsets ``at``."""
    dy = tl.load(dy_ptr + at, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + row)
    xhat = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
    xhat = tl.where(mask, (xhat - tl.load(mean_ptr + row)) * rstd, 0.0)
    return ln_backward_row(dy, xhat, rstd, w, mask, n), dy, xhat


@triton.jit
def layernorm_kernel(x_ptr, y_ptr, w_ptr, b_ptr, rows, n, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    mask = cols < n
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    for i in range(ROWS):
        row = tl.program_id(0).to(tl.int64) * ROWS + i
        if row < rows:
            x = tl.load(x_ptr + row * n + cols, mask=mask, other=0.0).to(tl.float32)
            mean = tl.sum(x, axis=0) / n
            d = tl.where(mask, x - mean, 0.0)
            rstd = 1 / tl.sqrt(tl.sum(d * d, axis=0) / n + eps)
            tl.store(y_ptr + row * n + cols, (d * rstd * w + b).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def layernorm_backward_kernel(dy_ptr, x_ptr, mean_ptr, rstd_ptr, w_ptr, res_ptr, dx_ptr, dw_ptr, db_ptr,
                              rows, n, RESIDUAL: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """dx = LN'(dy) (+ res, the gradient reaching x around the LN); this program's sums of dw, db."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    db = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(ROWS):
        row = pid.to(tl.int64) * ROWS + i
        if row < rows:
            dx, dy, xhat = ln_backward_at(dy_ptr, x_ptr, mean_ptr, rstd_ptr, row, row * n + cols, w, mask, n)
            if RESIDUAL:
                dx += tl.load(res_ptr + row * n + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(dx_ptr + row * n + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
            dw += dy * xhat
            db += dy
    tl.store(dw_ptr + pid * n + cols, dw, mask=mask)
    tl.store(db_ptr + pid * n + cols, db, mask=mask)


@triton.jit(do_not_specialize=SEED_ARGS)
def dropout_kernel(g_ptr, out_ptr, numel, seed_lo, seed_hi, threshold, scale, BLOCK: tl.constexpr):
    """out = g * mask, the mask of element i (flat index) as every fused op's forward drew it."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = i < numel
    g = tl.load(g_ptr + i, mask=inside, other=0.0).to(tl.float32)
    g = tl.where(dropout_keep(seed_lo, seed_hi, i, threshold), g * scale, 0.0)
    tl.store(out_ptr + i, g.to(out_ptr.dtype.element_ty), mask=inside)


# ---- launchers (contiguous tensors; rows = every dimension but the last) ---------------------------

def row_launch(n: int) -> dict:
    """BLOCK (the whole row of n, padded to a power of two) and enough warps to hold it in registers."""
    if n > MAX_ROW:
        raise ValueError(f"mixerkern (Triton): rows of {n} elements exceed the {MAX_ROW} one program holds")
    block = triton.next_power_of_2(max(n, 1))
    return dict(BLOCK=block, num_warps=min(16, max(4, block // 512)))


def rows_per_program(rows: int) -> int:
    return 8 if rows >= 8 * 512 else 1  # several rows each once the grid fills the GPU


def layernorm(x, weight, bias, eps: float, out_dtype):
    n = x.shape[-1]
    rows = x.numel() // max(n, 1)
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    if rows and n:
        per = rows_per_program(rows)
        layernorm_kernel[(triton.cdiv(rows, per),)](x, y, weight, bias, rows, n, eps, ROWS=per, **row_launch(n))
    return y


def layernorm_backward(dy, x, mean, rstd, weight, residual_grad=None, dx_dtype=None):
    """(dx, dweight, dbias) of y = LN(x) given dy; residual_grad is added to dx (the x + f(LN(x)) form)."""
    n = x.shape[-1]
    rows = x.numel() // max(n, 1)
    dx = torch.empty(x.shape, dtype=dx_dtype or x.dtype, device=x.device)
    per = rows_per_program(rows)
    programs = triton.cdiv(rows, per)
    dw = torch.zeros(max(programs, 1), n, dtype=torch.float32, device=x.device)
    db = torch.zeros_like(dw)
    if programs and n:
        layernorm_backward_kernel[(programs,)](
            dy, x, mean, rstd, weight, residual_grad if residual_grad is not None else dy, dx, dw, db, rows, n,
            RESIDUAL=residual_grad is not None, ROWS=per, **row_launch(n))
    return dx, dw.sum(0).to(weight.dtype), db.sum(0).to(weight.dtype)


def apply_dropout(g, seed: int, p: float):
    """g times the scaled keep-mask of a forward that dropped with (seed, p), over g's flat index."""
    out = torch.empty_like(g)
    block = 1024
    if g.numel():
        dropout_kernel[(triton.cdiv(g.numel(), block),)](
            g, out, g.numel(), *dropout_args(seed, p), BLOCK=block)
    return out
