from mixerkern.ops import token_mlp
from op_checks import make_mlp_inputs
from triton_suite import TritonOpSuite


class TestTritonTokenMlp(TritonOpSuite):
    op = token_mlp
    shapes = [(2, 28, 20, 28), (1, 33, 17, 40)]  # (batch, rows, cols, hidden): the patchless MNIST height

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_mlp_inputs("token_mlp", *shape, dtype=dtype)
