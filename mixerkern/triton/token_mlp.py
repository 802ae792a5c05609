"""The bare token MLP (patchless Mixer): the CUDA kernels of mixerkern::token_mlp, built from the fused GEMMs in mlp.py."""
from .mlp import entry_points

forward, backward = entry_points(token=True, normalized=False)
