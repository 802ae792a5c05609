"""Plain-PyTorch gMLP layer (Liu et al. 2021, "Pay Attention to MLPs"): the ground truth for the fused ops.

Submodule names follow timm's ``SpatialGatingBlock`` (norm, mlp_channels.fc1, mlp_channels.gate.norm,
mlp_channels.gate.proj, mlp_channels.fc2) so that timm gMLP checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from .mixer import check_layer_args


class SpatialGatingUnit(nn.Module):
    """``U * proj(LN(V))`` with ``[U | V]`` the two channel halves; proj mixes across patches."""

    def __init__(self, hidden: int, num_patches: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(hidden // 2, eps=eps)
        self.proj = nn.Linear(num_patches, num_patches)
        # Near-zero weight, unit bias: the gate starts close to the identity (U * 1).
        nn.init.normal_(self.proj.weight, std=1e-6)
        nn.init.ones_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u, v = h.chunk(2, dim=-1)
        return u * self.proj(self.norm(v).transpose(1, 2)).transpose(1, 2)


class GatedMlp(nn.Module):
    """fc1 -> GELU -> Dropout -> spatial gating -> fc2 (dim -> hidden -> hidden/2 -> dim)."""

    def __init__(self, num_patches: int, dim: int, hidden: int, dropout: float = 0.0, gate_eps: float = 1e-6,
                 approximate: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.drop = nn.Dropout(dropout)
        self.gate = SpatialGatingUnit(hidden, num_patches, eps=gate_eps)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.gate(self.drop(self.act(self.fc1(x)))))


class gMLPLayer(nn.Module):  # noqa: N801 - the model's published name
    """``out = x + fc2(SGU(Drop(GELU(fc1(LN(x))))))`` on x of shape (B, num_patches, dim).

    ``hidden`` defaults to 6 * dim (timm's gMLP). ``eps`` is the block LayerNorm's; ``gate_eps`` the
    gate LayerNorm's (default: ``eps``; timm's checkpoints use 1e-5 there).
    """

    STAGES = ("spatial_gating", "block")  # what forward_stages returns, in order

    def __init__(self, num_patches: int, dim: int, hidden: int | None = None, dropout: float = 0.0,
                 eps: float = 1e-6, approximate: str = "none", gate_eps: float | None = None):
        super().__init__()
        check_layer_args(num_patches, dim, dropout, approximate)
        self.hidden = 6 * dim if hidden is None else hidden
        if self.hidden < 2 or self.hidden % 2:
            raise ValueError(f"hidden must be even and >= 2 (it splits into two gate halves), got {self.hidden}")
        self.num_patches, self.dim = num_patches, dim
        self.dropout, self.eps, self.approximate = dropout, eps, approximate
        self.gate_eps = eps if gate_eps is None else gate_eps
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp_channels = GatedMlp(num_patches, dim, self.hidden, dropout, self.gate_eps, approximate)

    def config(self) -> dict:
        """Constructor arguments, so an equivalent layer (fused or not) can be built from this one."""
        return dict(num_patches=self.num_patches, dim=self.dim, hidden=self.hidden, dropout=self.dropout,
                    eps=self.eps, approximate=self.approximate, gate_eps=self.gate_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp_channels(self.norm(x))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[SGU output (B, P, hidden/2), out] of ``forward``'s math (see STAGES); out is forward(x)."""
        mlp = self.mlp_channels
        g = mlp.gate(mlp.drop(mlp.act(mlp.fc1(self.norm(x)))))
        return [g, x + mlp.fc2(g)]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())
