"""Plain-PyTorch patch embedding: the classifiers' stem, under timm's name (``stem.proj``)."""
from __future__ import annotations

import torch
from torch import nn

from . import functional


def image_pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s >= 1 for s in pair):
        raise ValueError(f"image_size must be a positive int or (height, width), got {size!r}")
    return pair


class PatchEmbed(nn.Module):
    """Non-overlapping patches, each linearly projected to ``dim``: a Conv2d with kernel = stride = patch,
    returning (B, num_patches, dim)."""

    def __init__(self, image_size: int | tuple[int, int], patch_size: int, in_chans: int, dim: int):
        super().__init__()
        height, width = image_pair(image_size)
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise ValueError(f"image_size {height}x{width} is not divisible by patch_size {patch_size}")
        if in_chans < 1 or dim < 1:
            raise ValueError(f"in_chans and dim must be >= 1, got in_chans={in_chans}, dim={dim}")
        self.image_size, self.patch_size, self.in_chans, self.dim = (height, width), patch_size, in_chans, dim
        self.grid = (height // patch_size, width // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def config(self) -> dict:
        """Constructor arguments, so an equivalent stem (fused or not) can be built from this one."""
        return dict(image_size=self.image_size, patch_size=self.patch_size, in_chans=self.in_chans, dim=self.dim)

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.in_chans, *self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, in_chans, height, width) = (B, {', '.join(map(str, expected))})"
                             f", got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return functional.patch_embed(x, self.proj.weight, self.proj.bias)

    def gemm_flops(self) -> int:
        return 2 * self.num_patches * self.proj.out_channels * self.in_chans * self.patch_size ** 2
