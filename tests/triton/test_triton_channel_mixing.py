from mixerkern.ops import channel_mixing
from op_checks import make_mixing_inputs
from triton_suite import TritonOpSuite


class TestTritonChannelMixing(TritonOpSuite):
    op = channel_mixing
    # (batch, patches, dim, hidden): no size a multiple of the tiles; 196 patches and dim 100.
    shapes = [(2, 37, 50, 45), (1, 196, 100, 24)]

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_mixing_inputs("channel_mixing", *shape, dtype=dtype)
