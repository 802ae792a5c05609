"""Plain-PyTorch FNet layer (Lee-Thorp et al. 2021, "FNet: Mixing Tokens with Fourier Transforms"),
the ground truth for the fused Fourier-mixing op. Parameter names: norm1, mlp.fc1, mlp.fc2, norm2.
"""
from __future__ import annotations

import torch
from torch import nn

from . import functional
from .mixer import GELU_APPROXIMATIONS, Mlp


class FNetLayer(nn.Module):
    """``y = LN1(x + Re(FFT2(x)))``, ``out = LN2(y + Drop(fc2(GELU(fc1(y)))))`` on x of shape (B, S, dim).

    The 2-D FFT runs over the token and channel axes; ``hidden`` defaults to 4 * dim. The layer
    works for any number of tokens, so unlike the other layers it takes no ``num_patches``.
    """

    STAGES = ("fourier_mixing", "block")  # what forward_stages returns, in order

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.0, eps: float = 1e-6,
                 approximate: str = "none"):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
        self.hidden = 4 * dim if hidden is None else hidden
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        self.dim, self.dropout, self.eps, self.approximate = dim, dropout, eps, approximate
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, self.hidden, approximate=approximate)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(dropout)

    def config(self) -> dict:
        """Constructor arguments, so an equivalent layer (fused or not) can be built from this one."""
        return dict(dim=self.dim, hidden=self.hidden, dropout=self.dropout, eps=self.eps,
                    approximate=self.approximate)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """LN1(x + Re(FFT2(x))): the part the fused layer replaces."""
        return functional.fourier_mixing(x, self.norm1.weight, self.norm1.bias, self.eps)

    def ffn(self, y: torch.Tensor) -> torch.Tensor:
        """LN2(y + Drop(fc2(GELU(fc1(y))))): the feed-forward sub-layer, which the fused layer also replaces."""
        return self.norm2(y + self.drop(self.mlp(y)))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[y, out] (see STAGES); out is forward(x)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (B, tokens, dim={self.dim}), got {tuple(x.shape)}")
        y = self.mix(x)
        return [y, self.ffn(y)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())
