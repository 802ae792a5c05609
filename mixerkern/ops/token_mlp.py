"""Token MLP: ``Drop(W2 GELU(W1 x_b + b1) + b2)`` per sample, mixing across axis 1, with no LayerNorm
and no residual: token_mixing's kernel in its bare form (the patchless Mixer's height MLP).

CPU kernel: csrc/cpu/token_mlp.cpp (math in csrc/cpu/token_mixing_kernels.h).
"""
from ..reference import functional as reference
from ._fused_op import FusedOp

MLP_ONLY_PARAMS = ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def _expected_shapes(x_shape, shapes):
    fc1_weight_shape = shapes["fc1_weight"]
    mixed = x_shape[1]
    hidden = fc1_weight_shape[0] if len(fc1_weight_shape) == 2 else -1
    return dict(fc1_weight=(hidden, mixed), fc1_bias=(hidden,), fc2_weight=(mixed, hidden), fc2_bias=(mixed,))


token_mlp = FusedOp("token_mlp", MLP_ONLY_PARAMS, reference.token_mlp, _expected_shapes, normalized=False,
                    layout="(B, rows, cols) with fc1_weight (hidden, rows)")
