"""mixerkern: fused kernels for attention-free vision MLPs (MLP-Mixer, gMLP, FNet).

>>> from mixerkern import FusedMixerLayer
>>> layer = FusedMixerLayer(num_patches=64, dim=256)
>>> from mixerkern import FusedgMLPLayer
>>> layer = FusedgMLPLayer(num_patches=64, dim=256, hidden=512)
"""
from . import functional, reference
from .layers import FusedFNetLayer, FusedgMLPLayer, FusedMixerLayer, FusedPatchEmbed, FusedPatchlessLayer
from .ops import backend_info, cpu_isa, set_cpu_isa, set_fourier_algorithm
from . import models
from .fuse import fuse, unfuse

__version__ = "0.1.0"
__all__ = ["FusedMixerLayer", "FusedgMLPLayer", "FusedFNetLayer", "FusedPatchlessLayer", "FusedPatchEmbed", "set_fourier_algorithm", "backend_info", "cpu_isa", "set_cpu_isa", "functional", "reference",
           "models", "fuse", "unfuse"]
