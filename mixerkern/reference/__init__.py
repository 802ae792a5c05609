"""Plain-PyTorch reference layers and op math (the ground truth for the fused kernels)."""
from . import functional
from .fnet import FNetLayer
from .gmlp import GatedMlp, SpatialGatingUnit, gMLPLayer
from .mixer import MixerLayer, Mlp
from .patch_embed import PatchEmbed
from .patchless import PatchlessLayer

__all__ = ["MixerLayer", "Mlp", "gMLPLayer", "FNetLayer", "GatedMlp", "SpatialGatingUnit", "PatchlessLayer",
           "PatchEmbed", "functional"]
