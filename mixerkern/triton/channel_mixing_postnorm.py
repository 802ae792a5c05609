"""Post-norm channel mixing (FNet's feed-forward sub-layer): the CUDA kernels of
mixerkern::channel_mixing_postnorm, built from the fused GEMMs in mlp.py and the LayerNorm in rows.py."""
from .mlp import entry_points

forward, backward = entry_points(token=False, normalized=True, post_norm=True)
