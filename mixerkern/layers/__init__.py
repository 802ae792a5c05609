"""Drop-in nn.Modules backed by the fused ops."""
from .fnet import FusedFNetLayer
from .gmlp import FusedgMLPLayer
from .mixer import BlockSequence, FusedMixerLayer
from .patch_embed import FusedPatchEmbed
from .patchless import FusedPatchlessLayer

__all__ = ["FusedMixerLayer", "FusedgMLPLayer", "FusedFNetLayer", "FusedPatchlessLayer", "FusedPatchEmbed",
           "BlockSequence"]
