from mixerkern.ops import channel_mixing
from op_suite import MixingOpSuite


class TestChannelMixing(MixingOpSuite):
    op = channel_mixing
    # (batch, num_patches, dim, channel_hidden): odd sizes, row counts that split unevenly into blocks.
    # The last has K >= 512 in the GEMMs, which then run in K blocks (csrc/cpu/gemm.h).
    shapes = [(3, 196, 100, 37), (4, 64, 256, 64), (2, 7, 17, 5), (1, 1, 3, 1), (3, 43, 65, 130), (2, 50, 520, 530)]
    odd_depth_shape = (3, 43, 65, 131)
    small_shape = (2, 5, 6, 3)

