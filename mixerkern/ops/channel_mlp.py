"""Channel MLP: ``Drop(fc2(GELU(fc1(x))))`` on every row, mixing the last axis, with no LayerNorm and
no residual: channel_mixing's kernel in its bare form (the patchless Mixer's width MLP).

CPU kernel: csrc/cpu/channel_mlp.cpp (math in csrc/cpu/channel_mixing_kernels.h).
"""
from ..reference import functional as reference
from ._fused_op import FusedOp
from .channel_mixing import saved_shape
from .token_mlp import MLP_ONLY_PARAMS


def _expected_shapes(x_shape, shapes):
    fc1_weight_shape = shapes["fc1_weight"]
    mixed = x_shape[-1]
    hidden = fc1_weight_shape[0] if len(fc1_weight_shape) == 2 else -1
    return dict(fc1_weight=(hidden, mixed), fc1_bias=(hidden,), fc2_weight=(mixed, hidden), fc2_bias=(mixed,))


channel_mlp = FusedOp("channel_mlp", MLP_ONLY_PARAMS, reference.channel_mlp, _expected_shapes, normalized=False,
                      layout="(B, rows, cols) with fc1_weight (hidden, cols)", saved_shape=saved_shape)
