"""Spatial gating (gMLP): ``U * (W LN(V) + b)`` with ``[U | V] = Drop(GELU(x))``, per sample.

x is fc1's output *before* GELU, shape (B, num_patches, hidden); the op applies GELU and dropout
itself, so that activation is never written out. LN normalizes V over its hidden/2 channels, and
W (num_patches, num_patches) left-multiplies it over the patch axis, with no transpose.
CPU kernel: csrc/cpu/spatial_gating.cpp.
"""
from ..reference import functional as reference
from ._fused_op import FusedOp

PARAMS = ("ln_weight", "ln_bias", "proj_weight", "proj_bias")


def _expected_shapes(x_shape, shapes):
    _, patches, hidden = x_shape
    if hidden < 2 or hidden % 2:
        raise ValueError(f"x's last dimension (hidden) must be even and >= 2, to split into the gate halves "
                         f"U and V; got x of shape {x_shape}")
    return dict(ln_weight=(hidden // 2,), ln_bias=(hidden // 2,), proj_weight=(patches, patches),
                proj_bias=(patches,))


spatial_gating = FusedOp("spatial_gating", PARAMS, reference.spatial_gating, _expected_shapes,
                         layout="(B, num_patches, hidden) with proj_weight (num_patches, num_patches)",
                         output_shape=lambda s, _: (*s[:-1], s[-1] // 2))
