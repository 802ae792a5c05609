"""Plain-PyTorch reference layers and op math (the ground truth for the fused kernels)."""
from . import functional
from .mixer import MixerLayer, Mlp

__all__ = ["MixerLayer", "Mlp", "functional"]
