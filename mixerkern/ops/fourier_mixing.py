"""Fourier mixing (FNet): ``LN(x + Re(FFT2(x)))`` over the (tokens, channels) axes of x (B, S, D).

For real x, Re(F_S X F_D) = C_S X C_D - S_S X S_D with the cosine/sine DFT matrices; the map is
self-adjoint, so the backward applies it to the incoming gradient. Any S and D, fp32/bf16/fp64.
CPU kernel: csrc/cpu/fourier_mixing.cpp.
"""
import math

import torch
import torch.nn.functional as F

from ..reference import functional as reference
from ._fused_op import FusedOp

PARAMS = ("ln_weight", "ln_bias")


def _expected_shapes(x_shape, shapes):
    dim = x_shape[-1]
    return dict(ln_weight=(dim,), ln_bias=(dim,))


def dft_matrices(n: int, dtype: torch.dtype, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi j k / n (n x n), with j k reduced mod n before the float conversion."""
    k = torch.arange(n, device=device)
    angle = (torch.outer(k, k) % n).to(torch.float64) * (2 * math.pi / n)
    return torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


def fourier_mixing_as_matmuls(x, ln_weight, ln_bias, eps: float = 1e-6):
    """The same function from real matmuls only, for exporters that know no custom op or FFT (ONNX)."""
    cs, ss = dft_matrices(x.shape[-2], x.dtype, x.device)
    cd, sd = dft_matrices(x.shape[-1], x.dtype, x.device)
    mixed = torch.matmul(torch.matmul(cs, x), cd) - torch.matmul(torch.matmul(ss, x), sd)
    return F.layer_norm(x + mixed, x.shape[-1:], ln_weight, ln_bias, eps)


def _saved_shape(x_shape, shapes):
    """A training step's saved activations: x + Re(FFT2(x)), the sum LN normalizes, so that the
    backward transforms only the gradient (one FFT instead of two)."""
    return x_shape


fourier_mixing = FusedOp("fourier_mixing", PARAMS, reference.fourier_mixing, _expected_shapes,
                         layout="(B, tokens, dim)", activation=False, saved_shape=_saved_shape,
                         # Like torch.fft, autocast leaves it in x's precision: its gradient flows into
                         # LayerNorm'd residual streams, and rounded to bf16 it made an FNet's LN weight
                         # and bias gradients (sums over all B*P tokens) 20-100x less accurate than
                         # eager autocast's. Explicit bf16 inputs do run in bf16, at any size.
                         autocast=False)
