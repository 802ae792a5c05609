from mixerkern.ops import channel_mixing_postnorm
from op_suite import MixingOpSuite


class TestChannelMixingPostnorm(MixingOpSuite):
    op = channel_mixing_postnorm
    # (batch, tokens, dim, hidden): fnet-cifar100's block (64 tokens, dim = hidden = 256), 196 tokens
    # with dim 100, row counts that split unevenly into blocks, and K >= 512 (gemm.h's K blocks).
    shapes = [(3, 196, 100, 37), (2, 64, 256, 256), (2, 7, 17, 5), (1, 1, 3, 1), (3, 43, 65, 130), (2, 50, 520, 530)]
    small_shape = (2, 5, 6, 3)
