from mixerkern.ops import token_mlp
from op_suite import MlpOpSuite


class TestTokenMlp(MlpOpSuite):
    op = token_mlp
    # (batch, rows, cols, hidden): patchless MNIST (28 x 28) and CIFAR-10 (32 x 96), odd and degenerate sizes.
    shapes = [(3, 28, 28, 28), (2, 32, 96, 32), (2, 7, 17, 5), (1, 1, 3, 1), (2, 65, 33, 130)]
    odd_depth_shape = (2, 65, 33, 131)
    small_shape = (2, 5, 6, 3)
