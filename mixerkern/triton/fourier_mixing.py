"""FNet's Fourier mixing: the CUDA kernels of mixerkern::fourier_mixing, out = LN(x + Re(FFT2(x))).

For real X (S, D) the real part of the 2-D DFT is a sum of real GEMMs on tensor cores,
    Re(F_S X F_D) = C_S X C_D − S_S X S_D,
with C, S the cosine and sine DFT matrices (symmetric). Here: T = X [C_D | S_D] (one GEMM, N = 2D),
then r = x + C_S T₁ and r −= S_S T₂ (two GEMMs with residual epilogues), then a row LayerNorm.
The map M(X) = C_S X C_D − S_S X S_D is self-adjoint, so dx = dr + M(dr) with dr = LN'(dout).

Precision: the DFT matrices and the intermediates are fp32 for every input dtype (a bf16 DFT
matrix alone would cost more than the whole bf16 error budget); bf16/fp16 inputs are widened as
they are loaded. fp32 GEMMs use tf32 when torch allows it (relative error ~1e-3 instead of ~1e-6).
"""
from __future__ import annotations

import functools

import torch

from ..ops.fourier_mixing import dft_matrices
from .gemm import gemm, row_stats
from .rows import layernorm, layernorm_backward


@functools.lru_cache(maxsize=16)
def _dft(n: int, device: torch.device):
    """fp32 (C, -S) and [C | S] (n, 2n) for size n, cached per device."""
    cos, sin = dft_matrices(n, torch.float32, device)
    return cos, -sin, torch.cat([cos, sin], dim=1)


def _mixed(x, out_dtype):
    """x + C_S X C_D − S_S X S_D per sample, for contiguous x (B, S, D)."""
    batch, tokens, dim = x.shape
    c_s, minus_s_s, _ = _dft(tokens, x.device)
    *_, cs_d = _dft(dim, x.device)
    t = torch.empty(batch, tokens, 2 * dim, dtype=torch.float32, device=x.device)
    gemm(x, cs_d.unsqueeze(0), t)
    partial = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    gemm(c_s.expand(batch, -1, -1), t[:, :, :dim], partial, residual=x)
    out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    return gemm(minus_s_s.expand(batch, -1, -1), t[:, :, dim:], out, residual=partial)


def forward(x, ln_weight, ln_bias, eps):
    x = x.contiguous()
    return layernorm(_mixed(x, torch.float32), ln_weight, ln_bias, eps, x.dtype)


def backward(grad_out, x, ln_weight, ln_bias, eps):
    x = x.contiguous()
    r = _mixed(x, torch.float32)
    dr, d_ln_w, d_ln_b = layernorm_backward(grad_out.contiguous(), r, *row_stats(r, eps), ln_weight,
                                            dx_dtype=torch.float32)
    return _mixed(dr, x.dtype), d_ln_w, d_ln_b
