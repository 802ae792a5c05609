"""Counter-based dropout mask shared by every fused op (and bit-identical to csrc/cpu/dropout.h).

The kernels never store a mask: element i of a call with 64-bit ``seed`` is kept iff
``hash(seed, i) < (1 - p) * 2**32``, so the backward pass regenerates exactly the forward's mask.
The seed itself is drawn from torch's default generator, so ``torch.manual_seed`` makes runs
reproducible.
"""
from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF


def draw_seed() -> torch.Tensor:
    """One 64-bit seed from torch's generator, as a 0-dim int64 CPU tensor."""
    return torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)


def keep_threshold(p: float) -> int:
    """Elements whose 32-bit hash is below this are kept."""
    return min(int((1.0 - p) * 2**32), _M32)


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    # MurmurHash3's finalizer on uint32 values held in int64 (products wrap mod 2**64; low bits exact).
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _M32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def hash32(seed: int, index: torch.Tensor) -> torch.Tensor:
    """The 32-bit hash of element ``index`` (int64 tensor) under ``seed`` (python int)."""
    k0, k1 = seed & _M32, (seed >> 32) & _M32
    lo, hi = index & _M32, (index >> 32) & _M32
    h = _fmix32(lo ^ k0)
    return _fmix32(h ^ k1 ^ ((hi * 0x9E3779B9) & _M32))


def dropout_mask(seed: torch.Tensor, shape, p: float, dtype=torch.float32) -> torch.Tensor:
    """The scaled keep-mask (0 or 1/(1-p)) that the fused kernels apply for this seed."""
    index = torch.arange(torch.Size(shape).numel(), dtype=torch.int64).reshape(shape)
    keep = hash32(int(seed), index) < keep_threshold(p)
    return keep.to(dtype) / (1.0 - p)
