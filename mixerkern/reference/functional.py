"""Reference math of each fused op, in plain PyTorch ops.

These define exactly what the kernels compute. ``mask`` is the dropout keep-mask (already scaled
by 1/(1-p)) or None; the fused kernels draw theirs from a counter-based RNG instead, see
mixerkern/ops/_dropout.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def token_mixing(x, ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                 eps: float = 1e-6, approximate: str = "none", mask=None):
    """x + Drop(fc2(GELU(fc1(LN(x)^T)))^T): the token MLP mixes across the patch axis (dim 1)."""
    u = F.layer_norm(x, x.shape[-1:], ln_weight, ln_bias, eps).transpose(1, 2)
    z = F.linear(F.gelu(F.linear(u, fc1_weight, fc1_bias), approximate=approximate), fc2_weight, fc2_bias)
    z = z.transpose(1, 2)
    return x + (z if mask is None else z * mask)


def channel_mixing(x, ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                   eps: float = 1e-6, approximate: str = "none", mask=None):
    """x + Drop(fc2(GELU(fc1(LN(x))))): the channel MLP acts on each token independently."""
    u = F.layer_norm(x, x.shape[-1:], ln_weight, ln_bias, eps)
    z = F.linear(F.gelu(F.linear(u, fc1_weight, fc1_bias), approximate=approximate), fc2_weight, fc2_bias)
    return x + (z if mask is None else z * mask)


def channel_mixing_postnorm(x, ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                            eps: float = 1e-6, approximate: str = "none", mask=None):
    """LN(x + Drop(fc2(GELU(fc1(x))))): the post-norm channel MLP, FNet's feed-forward sub-layer."""
    z = F.linear(F.gelu(F.linear(x, fc1_weight, fc1_bias), approximate=approximate), fc2_weight, fc2_bias)
    return F.layer_norm(x + (z if mask is None else z * mask), x.shape[-1:], ln_weight, ln_bias, eps)


def token_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, approximate: str = "none", mask=None):
    """Drop(fc2(GELU(fc1(x^T)))^T): the token MLP alone (no LayerNorm, no residual), mixing dim 1."""
    z = F.linear(F.gelu(F.linear(x.transpose(1, 2), fc1_weight, fc1_bias), approximate=approximate),
                 fc2_weight, fc2_bias).transpose(1, 2)
    return z if mask is None else z * mask


def channel_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, approximate: str = "none", mask=None):
    """Drop(fc2(GELU(fc1(x)))): the channel MLP alone (no LayerNorm, no residual), mixing the last dim."""
    z = F.linear(F.gelu(F.linear(x, fc1_weight, fc1_bias), approximate=approximate), fc2_weight, fc2_bias)
    return z if mask is None else z * mask


def spatial_gating(x, ln_weight, ln_bias, proj_weight, proj_bias, eps: float = 1e-6, approximate: str = "none",
                   mask=None):
    """gMLP's spatial gating unit on fc1's pre-activation x: [U | V] = Drop(GELU(x)), U * proj(LN(V))."""
    h = F.gelu(x, approximate=approximate)
    u, v = (h if mask is None else h * mask).chunk(2, dim=-1)
    v = F.layer_norm(v, v.shape[-1:], ln_weight, ln_bias, eps)
    return u * F.linear(v.transpose(1, 2), proj_weight, proj_bias).transpose(1, 2)


def fourier_mixing(x, ln_weight, ln_bias, eps: float = 1e-6):
    """LN(x + Re(FFT2(x))), the 2-D FFT over the token and channel axes.

    torch.fft has no bfloat16 (and only power-of-two float16) kernels, so lower precisions are
    transformed in float32 and rounded back, which is also what "accumulate in fp32" means here.
    """
    exact = x if x.dtype in (torch.float32, torch.float64) else x.float()
    mixed = torch.fft.fft2(exact).real.to(x.dtype)
    return F.layer_norm(x + mixed, x.shape[-1:], ln_weight, ln_bias, eps)


def patch_embed(x, weight, bias):
    """Non-overlapping patches of x (B, C, H, W), each projected to dim: Conv2d(weight, bias) with
    kernel = stride = patch = weight.shape[-1], returned as (B, num_patches, dim), patches row-major.

    The stride-p convolution is one GEMM over gathered patches, (B*P, C*p*p) @ (C*p*p, dim);
    gathering yields the (B, P, dim) layout directly and ran 1.2-1.3x faster than Conv2d + transpose.
    """
    batch, chans, height, width = x.shape
    p = weight.shape[-1]
    patches = x.reshape(batch, chans, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, (height // p) * (width // p), chans * p * p)
    return F.linear(patches, weight.reshape(weight.shape[0], -1), bias)


def mixer_blocks(x, *params, eps: float = 1e-6, approximate: str = "none"):
    """Mixer layers without dropout, applied in turn: channel mixing of token mixing's output per
    block. ``params``: each block's token then channel ln_weight, ln_bias, fc1_weight, fc1_bias,
    fc2_weight, fc2_bias (12 per block)."""
    for i in range(0, len(params), 12):
        x = token_mixing(x, *params[i:i + 6], eps=eps, approximate=approximate)
        x = channel_mixing(x, *params[i + 6:i + 12], eps=eps, approximate=approximate)
    return x


def mixer_features(images, stem_weight, stem_bias, *params, norm_weight=None, norm_bias=None, eps: float = 1e-6,
                   approximate: str = "none"):
    """A Mixer classifier's pooled features (B, dim): the patch embedding, the blocks (``params`` as
    in :func:`mixer_blocks`), the optional final LayerNorm, and the mean over patches."""
    x = mixer_blocks(patch_embed(images, stem_weight, stem_bias), *params, eps=eps, approximate=approximate)
    if norm_weight is not None:
        x = F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps)
    return x.mean(dim=1)
