"""Patchless MLP-Mixer (seed: "Patchless MLP-Mixer"): MLPs over an image's rows and columns, no patches.

Images (B, C, H, W) are read as (B, H, W*C) maps (the HWC reshape). The classifier stacks
``h = h + gate * layer(h)`` with a learnable scalar gate per block, initialized to 0 so that the
network starts as the identity; its head runs an MLP to one value over each row and another over
each column, concatenates the H + W*C values and maps them linearly to the classes. The
autoencoder stacks the bare layers (no residual) and reads the result back as an image.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import FusedPatchlessLayer
from ..reference import Mlp, PatchlessLayer
from ..reference.patch_embed import image_pair


class _RowMap(nn.Module):
    """Shared by both models: the HWC reshape in and out, and the layer stack's FLOP count."""

    def _setup(self, image_size, in_chans: int, depth: int) -> None:
        if in_chans < 1 or depth < 0:
            raise ValueError(f"in_chans must be >= 1 and depth >= 0, got in_chans={in_chans}, depth={depth}")
        self.image_size, self.in_chans = image_pair(image_size), in_chans
        self.height, self.width = self.image_size[0], self.image_size[1] * in_chans

    def to_rows(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_chans, *self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, in_chans, height, width) = (B, {', '.join(map(str, expected))})"
                             f", got {tuple(x.shape)}")
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], self.height, self.width)

    def from_rows(self, h: torch.Tensor) -> torch.Tensor:
        height, width = self.image_size
        return h.reshape(h.shape[0], height, width, self.in_chans).permute(0, 3, 1, 2)

    def layer_flops(self, depth: int) -> int:
        # Per layer, two H x H GEMMs on each of the W*C columns and two (W*C) x (W*C) GEMMs on each
        # of the H rows; a multiply-add counts 2.
        h, w = self.height, self.width
        return depth * 2 * 2 * h * w * (h + w)


def _layer(height: int, width: int, fused: bool, approximate: str) -> nn.Module:
    return (FusedPatchlessLayer if fused else PatchlessLayer)(height, width, approximate)


class GatedPatchlessBlock(nn.Module):
    """``h + gate * layer(h)``, gate a learnable scalar starting at 0 (the block starts as the identity)."""

    def __init__(self, height: int, width: int, fused: bool = True, approximate: str = "none"):
        super().__init__()
        self.layer = _layer(height, width, fused, approximate)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.gate * self.layer(h)


class PatchlessHead(nn.Module):
    """An MLP to one value over each row (W*C -> W*C -> 1) and over each column (H -> H -> 1), the
    two vectors concatenated, then a Linear to the classes."""

    def __init__(self, height: int, width: int, num_classes: int, approximate: str = "none"):
        super().__init__()
        self.rows = Mlp(width, width, 1, approximate=approximate)
        self.cols = Mlp(height, height, 1, approximate=approximate)
        self.fc = nn.Linear(height + width, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        rows = self.rows(h).squeeze(-1)                  # (B, H)
        cols = self.cols(h.transpose(1, 2)).squeeze(-1)  # (B, W*C)
        return self.fc(torch.cat([rows, cols], dim=1))

    def gemm_flops(self) -> int:
        h, w = self.cols.fc1.in_features, self.rows.fc1.in_features
        return 2 * (h * (w * w + w) + w * (h * h + h)) + 2 * (h + w) * self.fc.out_features


class PatchlessMixer(_RowMap):
    """Patchless classifier: images (B, in_chans, H, W) -> logits (B, num_classes)."""
    objective = "classification"

    def __init__(self, *, image_size: int | tuple[int, int] = 28, in_chans: int = 1, num_classes: int = 10,
                 depth: int = 16, fused: bool = True, approximate: str = "none"):
        super().__init__()
        self._setup(image_size, in_chans, depth)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = dict(image_size=image_size, in_chans=in_chans, num_classes=num_classes, depth=depth,
                           approximate=approximate)
        self.blocks = nn.Sequential(*(GatedPatchlessBlock(self.height, self.width, fused, approximate)
                                      for _ in range(depth)))
        self.head = PatchlessHead(self.height, self.width, num_classes, approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.to_rows(x)))

    def gemm_flops(self) -> int:
        return self.layer_flops(len(self.blocks)) + self.head.gemm_flops()


class PatchlessAutoencoder(_RowMap):
    """Stacked bare patchless layers: images (B, in_chans, H, W) -> reconstructions of the same shape."""
    objective = "reconstruction"

    def __init__(self, *, image_size: int | tuple[int, int] = 28, in_chans: int = 1, depth: int = 2,
                 fused: bool = True, approximate: str = "none"):
        super().__init__()
        self._setup(image_size, in_chans, depth)
        self.config = dict(image_size=image_size, in_chans=in_chans, depth=depth, approximate=approximate)
        self.layers = nn.Sequential(*(_layer(self.height, self.width, fused, approximate) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_rows(self.layers(self.to_rows(x)))

    def gemm_flops(self) -> int:
        return self.layer_flops(len(self.layers))
