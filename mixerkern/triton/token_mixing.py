"""Token mixing (MLP-Mixer): the CUDA kernels of mixerkern::token_mixing, built from the fused GEMMs in mlp.py."""
from .mlp import entry_points

forward, backward = entry_points(token=True, normalized=True)
