from mixerkern.ops import token_mixing
from op_checks import make_mixing_inputs
from triton_suite import TritonOpSuite


class TestTritonTokenMixing(TritonOpSuite):
    op = token_mixing
    # (batch, patches, dim, hidden): no size a multiple of the tiles; 196 patches as in Mixer-B/16.
    shapes = [(2, 37, 20, 45), (1, 196, 24, 17)]

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_mixing_inputs("token_mixing", *shape, dtype=dtype)
