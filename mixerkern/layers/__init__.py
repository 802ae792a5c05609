"""Drop-in nn.Modules backed by the fused ops."""
from .mixer import FusedMixerLayer

__all__ = ["FusedMixerLayer"]
