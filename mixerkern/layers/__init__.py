"""Drop-in nn.Modules backed by the fused ops."""
from .gmlp import FusedgMLPLayer
from .mixer import FusedMixerLayer

__all__ = ["FusedMixerLayer", "FusedgMLPLayer"]
