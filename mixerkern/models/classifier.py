"""Patch-based MLP image classifier (the seed's Keras "MLP-Mixer, FNet and gMLP on CIFAR-100" model).

image (B, C, H, W) -> patch embedding (B, P, D) [-> + pos_embed] -> blocks [-> LayerNorm]
-> mean over patches -> Dropout -> Linear head.

Module names follow timm's ``MlpMixer`` (stem.proj, blocks.N.*, norm, head), so with
``pos_embed=False, final_norm=True`` timm Mixer checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import BlockSequence, FusedMixerLayer, FusedPatchEmbed
from ..layers.mixer import hooked as _hooked
from ..ops import mixer_features
from ..reference import PatchEmbed
from .blocks import build_block, get_block_family


class MlpClassifier(nn.Module):
    """Patch embedding + a stack of ``block``-family layers + pooled linear head.

    ``dropout`` is applied before the head and, unless ``block_dropout`` is given, inside the blocks
    (as in the seed). ``fused`` picks fused or reference stem and blocks; the parameter names are the same.
    Extra keyword arguments go to the block builder (for mixer: token_hidden, channel_hidden,
    approximate). ``self.config`` holds the constructor arguments (minus ``fused``) as a plain dict.
    """
    objective = "classification"

    def __init__(self, *, image_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, dim: int = 512, depth: int = 8, block: str = "mixer",
                 fused: bool = True, dropout: float = 0.0, block_dropout: float | None = None,
                 pos_embed: bool = False, final_norm: bool = True, eps: float = 1e-6, **block_kwargs):
        super().__init__()
        if depth < 0 or num_classes < 1:
            raise ValueError(f"depth must be >= 0 and num_classes >= 1, got depth={depth}, "
                             f"num_classes={num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = dict(image_size=image_size, patch_size=patch_size, in_chans=in_chans,
                           num_classes=num_classes, dim=dim, depth=depth, block=block, dropout=dropout,
                           block_dropout=block_dropout, pos_embed=pos_embed, final_norm=final_norm, eps=eps,
                           **block_kwargs)
        self.block_family = block
        get_block_family(block)  # fail early, with the list of families, on a bad name
        self.stem = (FusedPatchEmbed if fused else PatchEmbed)(image_size, patch_size, in_chans, dim)
        num_patches = self.stem.num_patches
        self.pos_embed = nn.Parameter(torch.empty(1, num_patches, dim)) if pos_embed else None
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        block_dropout = dropout if block_dropout is None else block_dropout
        self.blocks = BlockSequence(*(
            build_block(block, num_patches, dim, fused, dropout=block_dropout, eps=eps, **block_kwargs)
            for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=eps) if final_norm else nn.Identity()
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)

    @property
    def num_patches(self) -> int:
        return self.stem.num_patches

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) images -> (B, num_patches, dim) token features."""
        x = self.stem(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(features.mean(dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self._fused_pooled_features(x)
        if pooled is None:
            return self.forward_head(self.forward_features(x))
        return self.head(self.head_drop(pooled))

    def _fused_pooled_features(self, x: torch.Tensor) -> torch.Tensor | None:
        """forward_features(x).mean(1) as one ``mixer_features`` call, when the model is that op: a
        fused stem without positional embedding, fused Mixer blocks that run as ``mixer_blocks``
        with one setting, a LayerNorm of that eps (or none) as the norm, and no forward hooks on any
        of them. None otherwise."""
        modules = [self.stem, self.blocks, self.norm, *self.blocks]
        # Exact types, as fuse() matches them: a subclass may change the math.
        if (type(self.stem) is not FusedPatchEmbed or self.pos_embed is not None or any(map(_hooked, modules))
                or torch.onnx.is_in_onnx_export()):
            return None
        blocks = list(self.blocks)
        settings = {b.block_settings() if type(b) is FusedMixerLayer else None for b in blocks}
        if None in settings or len(settings) > 1:
            return None
        layer_norm = type(self.norm) is nn.LayerNorm
        eps, approximate = settings.pop() if settings else (self.norm.eps if layer_norm else 1e-6, "none")
        if layer_norm and (self.norm.eps != eps or self.norm.weight is None or self.norm.bias is None):
            return None
        if not layer_norm and type(self.norm) is not nn.Identity:
            return None
        self.stem.check_input(x)
        return mixer_features(x, self.stem.proj.weight, self.stem.proj.bias,
                              *(t for b in blocks for t in b.block_params()),
                              norm_weight=self.norm.weight if layer_norm else None,
                              norm_bias=self.norm.bias if layer_norm else None, eps=eps, approximate=approximate)

    def gemm_flops(self) -> int:
        """Forward FLOPs per image of the GEMMs only (multiply-add = 2): stem, every block MLP, head."""
        family = get_block_family(self.block_family)
        head = 2 * self.head.in_features * self.head.out_features
        return self.stem.gemm_flops() + sum(family.gemm_flops(b, self.num_patches) for b in self.blocks) + head
