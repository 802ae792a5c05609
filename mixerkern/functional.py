"""Functional API of the fused ops: ``mixerkern.functional.token_mixing(x, ln_weight, ...)``."""
from .ops import (channel_mixing, channel_mixing_postnorm, channel_mlp, fourier_mixing, mixer_blocks, mixer_features,
                  patch_embed, spatial_gating, token_mixing, token_mlp)

__all__ = ["token_mixing", "channel_mixing", "spatial_gating", "fourier_mixing", "token_mlp", "channel_mlp",
           "channel_mixing_postnorm", "patch_embed", "mixer_blocks", "mixer_features"]
