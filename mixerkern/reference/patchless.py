"""Plain-PyTorch patchless Mixer layer: MLPs over an image's rows and columns directly, no patches.

The image (B, C, H, W) is read as a (B, H, W*C) map (the HWC reshape: 28 x 28 for MNIST, 32 x 96
for CIFAR). One layer mixes along the height axis, then along the width*channel axis:

    U = MLP_h(X^T)^T   (H -> H -> H, GELU between, on every column)
    out = MLP_w(U)     (W*C -> W*C -> W*C, GELU between, on every row)

with no LayerNorm and no residual: the model wraps it (``h + gate * layer(h)``) or stacks it bare.
"""
from __future__ import annotations

import torch
from torch import nn

from .mixer import GELU_APPROXIMATIONS, Mlp


class PatchlessLayer(nn.Module):
    def __init__(self, height: int, width: int, approximate: str = "none"):
        super().__init__()
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be >= 1, got height={height}, width={width}")
        if approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
        self.height, self.width, self.approximate = height, width, approximate
        self.mlp_height = Mlp(height, height, approximate=approximate)
        self.mlp_width = Mlp(width, width, approximate=approximate)

    def config(self) -> dict:
        return dict(height=self.height, width=self.width, approximate=self.approximate)

    def check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.height, self.width):
            raise ValueError(f"x must have shape (B, height, width) = (B, {self.height}, {self.width}), "
                             f"got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.mlp_width(self.mlp_height(x.transpose(1, 2)).transpose(1, 2))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())
