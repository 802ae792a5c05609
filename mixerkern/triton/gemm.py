"""Batched Triton GEMM with the fused prologue/epilogue steps every mixerkern op is built from.

    C[b] = epilogue(prologue(A[b]) @ prologue(B[b]))        (or, reducing the batch,  C = sum_b ...)

The batch reduction serves the weight gradients of the per-sample ops (dW = sum_b dZ_b H_b^T).
Operands are addressed through (batch, row, col) strides, so transposed views and the token-mixing
left-multiplication need no copies. Prologue: LayerNorm of A's rows (statistics per row m, affine
over k) or of B's rows (statistics per row k, affine over n), applied as the tiles are loaded.
Epilogue, in this order: bias (per row or column), GELU (exact or tanh; GELU' can be stored),
dropout (the counter hash of mixerkern/ops/_dropout.py, bit-identical), a multiplicative gate,
a residual, then the store in C's dtype. Accumulation is fp32; fp32 operands use tf32 when torch's
matmul precision allows it (``torch.backends.cuda.matmul.allow_tf32``), as torch's own matmuls do.
Operands of different dtypes (bf16 activations against fp32 DFT matrices) meet in fp32.

GPU constraints the kernel respects (the interpreter would not enforce them): block sizes are
powers of two >= 16 in every tl.dot dimension, all sizes are handled with masks.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..ops._dropout import keep_threshold

NO_BIAS, ROW_BIAS, COL_BIAS = 0, 1, 2
NO_ACT, GELU, GELU_TANH = 0, 1, 2
NO_LN, LN_A, LN_B = 0, 1, 2
# Triton compiles an int argument equal to 1 as a constant; the dropout seed halves and threshold
# are values, not shapes, and must stay tensors (and not trigger recompiles).
SEED_ARGS = ("seed_lo", "seed_hi", "threshold")


@triton.jit
def _fmix32(h):  # MurmurHash3's finalizer, in uint32 arithmetic (products wrap mod 2**32)
    h ^= h >> 16
    h *= tl.full((), 0x85EBCA6B, tl.uint32)
    h ^= h >> 13
    h *= tl.full((), 0xC2B2AE35, tl.uint32)
    return h ^ (h >> 16)


@triton.jit
def dropout_keep(seed_lo, seed_hi, index, threshold):
    """True where element ``index`` (int64) survives: hash(seed, index) < threshold (uint32)."""
    lo = (index & 0xFFFFFFFF).to(tl.uint32)
    hi = (index >> 32).to(tl.uint32)
    h = _fmix32(lo ^ seed_lo.to(tl.uint32))
    h = _fmix32(h ^ seed_hi.to(tl.uint32) ^ (hi * tl.full((), 0x9E3779B9, tl.uint32)))
    return h < threshold.to(tl.uint32)


def dropout_args(seed: int, p: float) -> tuple[int, int, int, float]:
    """(seed_lo, seed_hi, keep_threshold, keep_scale): the kernel arguments of a dropout with (seed, p)."""
    if p == 0:
        return 0, 0, 0, 1.0
    return seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, keep_threshold(p), 1.0 / (1.0 - p)


@triton.jit
def gelu(x, TANH: tl.constexpr):
    """GELU(x) and GELU'(x)."""
    if TANH:
        k: tl.constexpr = 0.7978845608028654
        inner = k * (x + 0.044715 * x * x * x)
        t = 2 * tl.sigmoid(2 * inner) - 1  # tanh
        cdf = 0.5 * (1 + t)
        grad = cdf + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
    else:
        cdf = 0.5 * (1 + tl.erf(x * 0.7071067811865476))
        grad = cdf + x * 0.3989422804014327 * tl.exp(-0.5 * x * x)
    return x * cdf, grad


@triton.jit(do_not_specialize=SEED_ARGS)
def gemm_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K, n_reduce,
    sab, sam, sak, sbb, sbk, sbn, scb, scm, scn,
    # prologue: LayerNorm statistics (batch stride, element stride) and affine parameters
    mean_ptr, rstd_ptr, s_stat_b, s_stat, ln_w_ptr, ln_b_ptr,
    bias_ptr, grad_ptr, gate_ptr, res_ptr,          # grad/gate/res use C's strides
    seed_lo, seed_hi, threshold, scale,
    drop_base, drop_sb, drop_sm, drop_sn,            # dropout counter of element (b, m, n)
    LN: tl.constexpr, BIAS: tl.constexpr, ACT: tl.constexpr, STORE_GRAD: tl.constexpr,
    DROPOUT: tl.constexpr, GATE: tl.constexpr, RESIDUAL: tl.constexpr, ALLOW_TF32: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    pid_m, pid_n, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    mm, mn = rm < M, rn < N
    if LN == 2:  # affine of B's columns n
        w_b = tl.load(ln_w_ptr + rn, mask=mn, other=0.0).to(tl.float32)
        c_b = tl.load(ln_b_ptr + rn, mask=mn, other=0.0).to(tl.float32)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for r in range(0, n_reduce):  # n_reduce = 1 unless reduce_batch; then the grid has only b = 0
        src = (b + r).to(tl.int64)  # the batch entry read: b, or each r in turn
        a_base = a_ptr + src * sab
        b_base = b_ptr + src * sbb
        if LN == 1:  # statistics of A's rows m
            mu_a = tl.load(mean_ptr + src * s_stat_b + rm * s_stat, mask=mm, other=0.0)
            rs_a = tl.load(rstd_ptr + src * s_stat_b + rm * s_stat, mask=mm, other=0.0)
        for k0 in range(0, K, BK):
            rk = k0 + tl.arange(0, BK)
            mk = rk < K
            a = tl.load(a_base + rm[:, None] * sam + rk[None, :] * sak, mask=mm[:, None] & mk[None, :], other=0.0)
            bt = tl.load(b_base + rk[:, None] * sbk + rn[None, :] * sbn, mask=mk[:, None] & mn[None, :], other=0.0)
            if LN == 1:
                w = tl.load(ln_w_ptr + rk, mask=mk, other=0.0).to(tl.float32)
                c = tl.load(ln_b_ptr + rk, mask=mk, other=0.0).to(tl.float32)
                a = (a.to(tl.float32) - mu_a[:, None]) * rs_a[:, None] * w[None, :] + c[None, :]
                a = tl.where(mk[None, :], a, 0.0).to(bt.dtype)
            if LN == 2:
                mu = tl.load(mean_ptr + src * s_stat_b + rk * s_stat, mask=mk, other=0.0)
                rs = tl.load(rstd_ptr + src * s_stat_b + rk * s_stat, mask=mk, other=0.0)
                bt = (bt.to(tl.float32) - mu[:, None]) * rs[:, None] * w_b[None, :] + c_b[None, :]
                bt = tl.where(mk[:, None], bt, 0.0).to(a.dtype)
            if DOT_FP32:  # mixed dtypes; and the interpreter keeps bf16 as raw uint16 bits, so its tl.dot needs fp32
                a, bt = a.to(tl.float32), bt.to(tl.float32)
            acc = tl.dot(a, bt, acc, allow_tf32=ALLOW_TF32)
    if BIAS == 1:
        acc += tl.load(bias_ptr + rm, mask=mm, other=0.0).to(tl.float32)[:, None]
    if BIAS == 2:
        acc += tl.load(bias_ptr + rn, mask=mn, other=0.0).to(tl.float32)[None, :]
    c_off = b.to(tl.int64) * scb + rm[:, None] * scm + rn[None, :] * scn
    mask = mm[:, None] & mn[None, :]
    if ACT != 0:
        acc, d_act = gelu(acc, ACT == 2)
        if STORE_GRAD:
            tl.store(grad_ptr + c_off, d_act.to(grad_ptr.dtype.element_ty), mask=mask)
    if DROPOUT:
        index = drop_base + b.to(tl.int64) * drop_sb + rm[:, None].to(tl.int64) * drop_sm + rn[None, :] * drop_sn
        acc = tl.where(dropout_keep(seed_lo, seed_hi, index, threshold), acc * scale, 0.0)
    if GATE:
        acc *= tl.load(gate_ptr + c_off, mask=mask, other=0.0).to(tl.float32)
    if RESIDUAL:
        acc += tl.load(res_ptr + c_off, mask=mask, other=0.0).to(tl.float32)
    tl.store(c_ptr + c_off, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def row_stats_kernel(x_ptr, mean_ptr, rstd_ptr, N, stride, eps, BLOCK: tl.constexpr):
    """Mean and 1/sqrt(var + eps) of row program_id(0) of a (rows, N) matrix (two passes, fp32)."""
    row = tl.program_id(0).to(tl.int64)
    base = x_ptr + row * stride
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, N, BLOCK):
        cols = j + tl.arange(0, BLOCK)
        total += tl.load(base + cols, mask=cols < N, other=0.0).to(tl.float32)
    mean = tl.sum(total, axis=0) / N
    sq = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(0, N, BLOCK):
        cols = j + tl.arange(0, BLOCK)
        d = tl.where(cols < N, tl.load(base + cols, mask=cols < N, other=0.0).to(tl.float32) - mean, 0.0)
        sq += d * d
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, 1 / tl.sqrt(tl.sum(sq, axis=0) / N + eps))


# ---- launchers -------------------------------------------------------------------------------------

def row_stats(x, eps: float):
    """(mean, rstd) float32 of the rows of a contiguous (..., N) tensor, shaped like x[..., 0]."""
    rows = x.numel() // x.shape[-1]
    mean = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    if rows:
        block = min(1024, triton.next_power_of_2(x.shape[-1]))
        row_stats_kernel[(rows,)](x, mean, rstd, x.shape[-1], x.shape[-1], eps, BLOCK=block)
    return mean, rstd


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tf32_allowed() -> bool:
    """fp32 GEMMs may use tf32 exactly when torch's own CUDA matmuls may."""
    return torch.backends.cuda.matmul.allow_tf32


def _strides3(t):
    return 0 if t.shape[0] == 1 else t.stride(0), t.stride(1), t.stride(2)  # a batch of 1 broadcasts


def _block(size: int, cap: int) -> int:
    return min(cap, max(16, triton.next_power_of_2(size)))  # tl.dot needs >= 16 in every dimension


def gemm(a, b, out, *, ln=None, ln_on="a", bias=None, bias_on="row", act="none", grad=None, dropout=None,
         gate=None, residual=None, reduce_batch=False, allow_tf32=None, block=None):
    """out[i] = epilogue(prologue(a[i]) @ prologue(b[i])) for 3-D a (batch, M, K), b (batch, K, N),
    out (batch, M, N); a batch stride of 0 broadcasts an operand (a shared weight). With
    ``reduce_batch`` out is (1, M, N) and receives the sum over the batch instead.

    ln = (mean, rstd, weight, bias): LayerNorm of a's rows (ln_on="a"; stats (batch, M), affine (K,))
    or of b's rows (ln_on="b"; stats (batch, K), affine (N,)). bias: (M,) for bias_on="row", (N,) for
    "col". act: "none" | "gelu" | "gelu_tanh"; grad, like out, receives GELU' of the pre-activation.
    dropout = (seed, p, base, (sb, sm, sn)): element (i, m, n) is kept per the hash of counter
    base + i sb + m sm + n sn, and scaled by 1/(1-p). gate multiplies, residual adds (both like out).
    allow_tf32: None follows torch's setting.
    """
    batch, M, K = a.shape
    N = b.shape[2]
    assert b.shape[1:] == (K, N) and b.shape[0] in (batch, 1), (a.shape, b.shape)  # b may broadcast
    assert out.shape == ((1 if reduce_batch else batch), M, N), (a.shape, b.shape, out.shape)
    bm, bn, bk = block or (_block(M, 64), _block(N, 64), _block(K, 32))
    dummy = out
    mean, rstd, ln_w, ln_b = ln if ln is not None else (dummy, dummy, dummy, dummy)
    seed, p, base, (d_sb, d_sm, d_sn) = dropout if dropout is not None else (0, 0.0, 0, (0, 0, 0))
    stats_b, stats_s = (mean.stride(0), mean.stride(1)) if ln is not None else (0, 0)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn), 1 if reduce_batch else batch)
    if batch == 0 or M == 0 or N == 0:
        return out.zero_() if reduce_batch else out
    gemm_kernel[grid](
        a, b, out, M, N, K, batch if reduce_batch else 1, *_strides3(a), *_strides3(b), *_strides3(out),
        mean, rstd, stats_b, stats_s, ln_w, ln_b,
        bias if bias is not None else dummy, grad if grad is not None else dummy,
        gate if gate is not None else dummy, residual if residual is not None else dummy,
        *dropout_args(seed, p), base, d_sb, d_sm, d_sn,
        LN=NO_LN if ln is None else (LN_A if ln_on == "a" else LN_B),
        BIAS=NO_BIAS if bias is None else (ROW_BIAS if bias_on == "row" else COL_BIAS),
        ACT={"none": NO_ACT, "gelu": GELU, "gelu_tanh": GELU_TANH}[act], STORE_GRAD=grad is not None,
        DROPOUT=dropout is not None, GATE=gate is not None, RESIDUAL=residual is not None,
        ALLOW_TF32=tf32_allowed() if allow_tf32 is None else allow_tf32,
        DOT_FP32=a.dtype != b.dtype or (interpreting() and a.dtype == torch.bfloat16),
        BM=bm, BN=bn, BK=bk)
    return out
