"""Block registry: how each MLP family (mixer, gmlp, fnet) builds its block and counts its FLOPs.

A family registers a :class:`BlockFamily`; the classifier only ever calls ``build`` and ``gemm_flops``,
so adding a family is one ``register_block`` call. ``build(num_patches, dim, fused, **kwargs)`` must
accept at least ``dropout`` and ``eps``, and the fused and reference blocks it returns must have
identical parameter names, so their state_dicts are interchangeable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..layers import FusedFNetLayer, FusedgMLPLayer, FusedMixerLayer
from ..reference import FNetLayer, MixerLayer, gMLPLayer


@dataclass(frozen=True)
class BlockFamily:
    build: Callable[..., nn.Module]  # (num_patches, dim, fused: bool, **block_kwargs) -> block
    gemm_flops: Callable[[nn.Module, int], int]  # (block, num_patches) -> forward FLOPs on one image


BLOCKS: dict[str, BlockFamily] = {}


def register_block(name: str, family: BlockFamily) -> None:
    if name in BLOCKS:
        raise ValueError(f"block family {name!r} is already registered")
    BLOCKS[name] = family


def get_block_family(name: str) -> BlockFamily:
    try:
        return BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown block family {name!r}; available: {sorted(BLOCKS)}") from None


def build_block(name: str, num_patches: int, dim: int, fused: bool, **block_kwargs) -> nn.Module:
    return get_block_family(name).build(num_patches, dim, fused, **block_kwargs)


# ---- MLP-Mixer ---------------------------------------------------------------------------------
def _build_mixer(num_patches: int, dim: int, fused: bool, **kwargs) -> nn.Module:
    return (FusedMixerLayer if fused else MixerLayer)(num_patches, dim, **kwargs)


def _mixer_flops(block: nn.Module, num_patches: int) -> int:
    # Each MLP is two GEMMs of the same size (2 FLOPs per multiply-add): the token MLP maps
    # P -> token_hidden -> P for each of the D channels, the channel MLP D -> channel_hidden -> D
    # for each of the P patches.
    patches, dim = block.num_patches, block.dim
    return 2 * 2 * patches * dim * (block.token_hidden + block.channel_hidden)


register_block("mixer", BlockFamily(build=_build_mixer, gemm_flops=_mixer_flops))


# ---- gMLP ----------------------------------------------------------------------------------------
def _build_gmlp(num_patches: int, dim: int, fused: bool, **kwargs) -> nn.Module:
    return (FusedgMLPLayer if fused else gMLPLayer)(num_patches, dim, **kwargs)


def _gmlp_flops(block: nn.Module, num_patches: int) -> int:
    # fc1 (D -> hidden) and fc2 (hidden/2 -> D) on every patch, and the spatial projection
    # (P x P) on each of the hidden/2 gate channels.
    patches, dim, half = block.num_patches, block.dim, block.hidden // 2
    return 2 * patches * (dim * 2 * half + half * dim) + 2 * patches * patches * half


register_block("gmlp", BlockFamily(build=_build_gmlp, gemm_flops=_gmlp_flops))


# ---- FNet ----------------------------------------------------------------------------------------
def _build_fnet(num_patches: int, dim: int, fused: bool, **kwargs) -> nn.Module:
    return (FusedFNetLayer if fused else FNetLayer)(dim, **kwargs)  # any number of tokens


def _fnet_flops(block: nn.Module, num_patches: int) -> int:
    # The FFN's two GEMMs, plus the customary 2.5 N log2 N for the 2-D FFT of N = P * D points
    # (the figure the peers are credited with, whatever algorithm actually runs).
    patches, dim = num_patches, block.dim
    points = patches * dim
    return 2 * 2 * patches * dim * block.hidden + round(2.5 * points * math.log2(points))


register_block("fnet", BlockFamily(build=_build_fnet, gemm_flops=_fnet_flops))
