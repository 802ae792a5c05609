"""Channel mixing: ``x + Drop(fc2(GELU(fc1(LN(x)))))`` on every token, mixing across channels.

CPU kernel: csrc/cpu/channel_mixing.cpp.
"""
from ..reference import functional as reference
from ._fused_op import MLP_PARAMS, FusedOp


def expected_shapes(x_shape, shapes):
    """Shared with channel_mixing_postnorm, which has the same parameters."""
    fc1_weight_shape = shapes["fc1_weight"]
    dim = x_shape[-1]
    hidden = fc1_weight_shape[0] if len(fc1_weight_shape) == 2 else -1
    return dict(ln_weight=(dim,), ln_bias=(dim,), fc1_weight=(hidden, dim), fc1_bias=(hidden,),
                fc2_weight=(dim, hidden), fc2_bias=(dim,))


def saved_shape(x_shape, shapes):
    """A training step's saved activations: fc1's output U W1^T + b1 per token (channel_hidden)."""
    return (*x_shape[:2], shapes["fc1_weight"][0])


channel_mixing = FusedOp("channel_mixing", MLP_PARAMS, reference.channel_mixing, expected_shapes,
                         layout="(B, num_patches, dim) with fc1_weight (channel_hidden, dim)",
                         saved_shape=saved_shape)
