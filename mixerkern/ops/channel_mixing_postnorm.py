"""Post-norm channel mixing: ``LN(x + Drop(fc2(GELU(fc1(x)))))`` on every token, FNet's feed-forward
sub-layer. channel_mixing's parameters and kernel, with the LayerNorm moved behind the residual.

CPU kernel: csrc/cpu/channel_mixing_postnorm.cpp (math in csrc/cpu/channel_mixing_kernels.h).
"""
from ..reference import functional as reference
from ._fused_op import MLP_PARAMS, FusedOp
from .channel_mixing import expected_shapes


def _saved_shape(x_shape, shapes):
    """A training step's saved activations: fc1's output (hidden) and the sum that LN normalizes
    (dim) of every token. The kernels keep them as two planes, all fc1 outputs then all sums."""
    return (*x_shape[:2], shapes["fc1_weight"][0] + x_shape[2])


channel_mixing_postnorm = FusedOp("channel_mixing_postnorm", MLP_PARAMS, reference.channel_mixing_postnorm,
                                  expected_shapes, layout="(B, tokens, dim) with fc1_weight (hidden, dim)",
                                  # Its output is LN2's, which autocast keeps in fp32, as it does the
                                  # residual stream: so x, the output and the LayerNorm stay in x's
                                  # precision, as in fourier_mixing (LN weight/bias gradients summed
                                  # over B*P rows suffer most from bf16), while autocast casts fc1's
                                  # and fc2's weights, as it does a Linear's: the GEMMs take bf16
                                  # operands. Explicit bf16 inputs run in bf16.
                                  autocast=False, autocast_weights=("fc1_weight", "fc2_weight"),
                                  saved_shape=_saved_shape)
