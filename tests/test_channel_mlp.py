from mixerkern.ops import channel_mlp
from op_suite import MlpOpSuite


class TestChannelMlp(MlpOpSuite):
    op = channel_mlp
    # (batch, rows, cols, hidden): patchless MNIST (28 x 28) and CIFAR-10 (32 x 96), odd and degenerate sizes.
    shapes = [(3, 28, 28, 28), (2, 32, 96, 96), (2, 7, 17, 5), (1, 1, 3, 1), (3, 65, 100, 130)]
    odd_depth_shape = (3, 43, 65, 131)
    small_shape = (2, 5, 6, 3)
