import torch

from mixerkern.ops import spatial_gating
from op_checks import make_gating_inputs
from op_suite import FusedOpSuite


class TestSpatialGating(FusedOpSuite):
    op = spatial_gating
    # (batch, num_patches, hidden): the seed's shape, gMLP-S/16's 196 patches, odd halves, degenerate ones.
    shapes = [(3, 196, 74), (4, 64, 512), (2, 7, 34), (1, 1, 2), (2, 65, 130)]
    small_shape = (2, 5, 6)

    def inputs(self, shape, dtype=torch.float32):
        return make_gating_inputs(*shape, dtype=dtype)

    def bad_shape_cases(self, x, params):
        return [((x, params[0], params[1], params[2][:-1, :-1], params[3]), r"proj_weight must have shape"),
                ((x[:, :-1], *params), r"proj_weight must have shape \(195, 195\)"),
                ((x[..., :-1], *params), r"hidden\) must be even"),
                ((x[..., :-2], *params), r"ln_weight must have shape")]

    def test_output_is_half_the_hidden_width(self):
        x, params = self.inputs(self.shapes[1])
        assert self.op(x, *params).shape == (4, 64, 256)
