"""Plain-PyTorch MLP-Mixer layer: the ground truth the fused kernels are tested against.

Submodule names follow timm's ``MixerBlock`` (norm1, mlp_tokens.fc1/fc2, norm2, mlp_channels.fc1/fc2)
so that timm checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

GELU_APPROXIMATIONS = ("none", "tanh")


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm's ``Mlp`` without its parameter-free dropout/norm slots)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 approximate: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def check_layer_args(num_patches: int, dim: int, dropout: float, approximate: str) -> None:
    if num_patches < 1 or dim < 1:
        raise ValueError(f"num_patches and dim must be >= 1, got num_patches={num_patches}, dim={dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")


class MixerLayer(nn.Module):
    """``y = x + Drop(TokenMLP(LN1(x)))``, ``out = y + Drop(ChannelMLP(LN2(y)))`` on x of shape (B, P, D).

    TokenMLP mixes across the patch axis (P -> token_hidden -> P); ChannelMLP across channels
    (D -> channel_hidden -> D). Defaults follow the paper/timm: token_hidden = D // 2, channel_hidden = 4 D.
    """

    STAGES = ("token_mixing", "channel_mixing")  # what forward_stages returns, in order

    def __init__(self, num_patches: int, dim: int, token_hidden: int | None = None,
                 channel_hidden: int | None = None, dropout: float = 0.0, eps: float = 1e-6,
                 approximate: str = "none"):
        super().__init__()
        check_layer_args(num_patches, dim, dropout, approximate)
        self.num_patches, self.dim = num_patches, dim
        self.token_hidden = max(dim // 2, 1) if token_hidden is None else token_hidden
        self.channel_hidden = 4 * dim if channel_hidden is None else channel_hidden
        if self.token_hidden < 1 or self.channel_hidden < 1:
            raise ValueError(f"token_hidden and channel_hidden must be >= 1, got {self.token_hidden}, "
                             f"{self.channel_hidden}")
        self.dropout, self.eps, self.approximate = dropout, eps, approximate
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp_tokens = Mlp(num_patches, self.token_hidden, approximate=approximate)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp_channels = Mlp(dim, self.channel_hidden, approximate=approximate)
        self.drop = nn.Dropout(dropout)

    def config(self) -> dict:
        """Constructor arguments, so an equivalent layer (fused or not) can be built from this one."""
        return dict(num_patches=self.num_patches, dim=self.dim, token_hidden=self.token_hidden,
                    channel_hidden=self.channel_hidden, dropout=self.dropout, eps=self.eps,
                    approximate=self.approximate)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[y, out] (see STAGES): after the token MLP, then after the channel MLP; out is forward(x)."""
        y = x + self.drop(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return [y, y + self.drop(self.mlp_channels(self.norm2(y)))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())
