"""Plain-PyTorch reference layers and op math (the ground truth for the fused kernels)."""
from . import functional
from .gmlp import GatedMlp, SpatialGatingUnit, gMLPLayer
from .mixer import MixerLayer, Mlp

__all__ = ["MixerLayer", "Mlp", "gMLPLayer", "GatedMlp", "SpatialGatingUnit", "functional"]
