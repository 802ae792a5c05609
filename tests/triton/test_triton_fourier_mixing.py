from mixerkern.ops import fourier_mixing
from op_checks import make_fourier_inputs
from triton_suite import TritonOpSuite


class TestTritonFourierMixing(TritonOpSuite):
    op = fourier_mixing
    shapes = [(2, 37, 20), (1, 196, 24), (2, 1, 5)]  # (batch, tokens, dim): odd, 196 tokens, one token

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_fourier_inputs(*shape, dtype=dtype)
