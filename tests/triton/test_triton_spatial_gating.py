from mixerkern.ops import spatial_gating
from op_checks import make_gating_inputs
from triton_suite import TritonOpSuite


class TestTritonSpatialGating(TritonOpSuite):
    op = spatial_gating
    shapes = [(2, 37, 46), (1, 196, 34)]  # (batch, patches, hidden): odd halves, 196 patches

    @staticmethod
    def make_inputs(*shape, dtype):
        return make_gating_inputs(*shape, dtype=dtype)
