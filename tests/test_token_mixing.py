from mixerkern.ops import token_mixing
from op_suite import MixingOpSuite


class TestTokenMixing(MixingOpSuite):
    op = token_mixing
    # (batch, num_patches, dim, token_hidden): the seed's shape, odd sizes, and degenerate ones.
    # The last has K >= 512 in the GEMMs, which then run in K blocks (csrc/cpu/gemm.h).
    shapes = [(3, 196, 100, 37), (4, 64, 256, 64), (2, 7, 17, 5), (1, 1, 3, 1), (2, 65, 33, 130), (2, 520, 20, 530)]
    odd_depth_shape = (2, 65, 33, 131)
    small_shape = (2, 5, 6, 3)

