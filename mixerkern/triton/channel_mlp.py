"""The bare channel MLP (patchless Mixer): the CUDA kernels of mixerkern::channel_mlp, built from the fused GEMMs in mlp.py."""
from .mlp import entry_points

forward, backward = entry_points(token=False, normalized=False)
