from mixerkern.ops import channel_mixing_postnorm
from op_checks import make_mixing_inputs
from triton_suite import TritonOpSuite


class TestTritonChannelMixingPostnorm(TritonOpSuite):
    op = channel_mixing_postnorm
    # (batch, tokens, dim, hidden): no size a multiple of the tiles; 196 tokens and dim 100.
    shapes = [(2, 37, 50, 45), (1, 196, 100, 24)]

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_mixing_inputs("channel_mixing_postnorm", *shape, dtype=dtype)
