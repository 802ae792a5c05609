from mixerkern.ops import channel_mlp
from op_checks import make_mlp_inputs
from triton_suite import TritonOpSuite


class TestTritonChannelMlp(TritonOpSuite):
    op = channel_mlp
    shapes = [(2, 28, 20, 28), (1, 33, 17, 40)]  # (batch, rows, cols, hidden): the patchless MNIST height

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_mlp_inputs("channel_mlp", *shape, dtype=dtype)
