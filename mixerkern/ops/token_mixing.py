"""Token mixing: ``x + Drop(W2 GELU(W1 LN(x_b) + b1) + b2)`` per sample, mixing across patches.

LN normalizes each patch over channels; the token MLP is a left-multiplication over the patch axis
(W1 is (token_hidden, P), W2 is (P, token_hidden)), so no transpose is ever materialized.
CPU kernel: csrc/cpu/token_mixing.cpp.
"""
from ..reference import functional as reference
from ._fused_op import MLP_PARAMS, FusedOp


def _expected_shapes(x_shape, shapes):
    fc1_weight_shape = shapes["fc1_weight"]
    _, patches, dim = x_shape
    hidden = fc1_weight_shape[0] if len(fc1_weight_shape) == 2 else -1
    return dict(ln_weight=(dim,), ln_bias=(dim,), fc1_weight=(hidden, patches), fc1_bias=(hidden,),
                fc2_weight=(patches, hidden), fc2_bias=(patches,))


token_mixing = FusedOp("token_mixing", MLP_PARAMS, reference.token_mixing, _expected_shapes,
                       layout="(B, num_patches, dim) with fc1_weight (token_hidden, num_patches)")
