import pytest
import torch
import torch.nn.functional as F

import mixerkern
from mixerkern.ops import patch_embed
from op_checks import make_patch_inputs, rel_err
from op_suite import FusedOpSuite


class TestPatchEmbed(FusedOpSuite):
    op = patch_embed
    # (batch, in_chans, height, width, patch, dim): mixer-cifar100's stem, MNIST-like 28x28 with
    # patch 7 and an odd dim, a non-square image with odd patch and dim, 1x1 patches, 224 px with
    # patch 16 (196 patches, K = 768, several backward image groups of one).
    shapes = [(3, 3, 64, 64, 8, 256), (5, 1, 28, 28, 7, 37), (2, 5, 6, 9, 3, 17), (2, 2, 4, 4, 1, 5),
              (2, 3, 224, 224, 16, 100)]
    small_shape = (2, 2, 6, 4, 2, 5)

    def inputs(self, shape, dtype=torch.float32):
        return make_patch_inputs(*shape, dtype=dtype)

    def bad_shape_cases(self, x, params):
        weight, bias = params
        return [((x, weight[:, :-1], bias), r"weight must have shape \(256, 3, 8, 8\)"),
                ((x, weight[..., :-1], bias), r"weight must have shape \(256, 3, 7, 7\)"),
                ((x[..., :-1], weight, bias), r"multiples of the patch size 8"),
                ((x, weight, bias[:-1]), r"bias must have shape \(256,\)")]

    def test_reference_is_conv2d(self):
        """The reference gathers patches for one GEMM; it must be the strided Conv2d it stands for."""
        x, (weight, bias) = self.inputs(self.shapes[2], torch.float64)
        conv = F.conv2d(x, weight, bias, stride=weight.shape[-1]).flatten(2).transpose(1, 2)
        assert rel_err(self.op.reference(x, weight, bias), conv) < 1e-14

    def test_image_gradient_skipped_when_not_needed(self):
        """Images are leaves without grad: the backward then skips dx (a GEMM as large as the
        forward) and still gives the same weight gradients."""
        x, params = self.inputs(self.shapes[0])
        leaves = [p.clone().requires_grad_() for p in params]
        out = self.op(x, *leaves)
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, leaves, g)
        full = self.op.backward_op(g, x, *params)
        skipped = self.op.backward_op(g, x, *params, False)
        assert full[0].shape == x.shape and skipped[0].numel() == 0
        for a, b, c in zip(grads, full[1:], skipped[1:]):
            assert torch.equal(a, b) and torch.equal(b, c)

    def test_compiled_model_stem_has_no_graph_break(self):
        stem = mixerkern.layers.FusedPatchEmbed(12, 4, 3, 20)
        x = torch.randn(2, 3, 12, 12)
        compiled = torch.compile(stem, fullgraph=True, backend="aot_eager")
        assert rel_err(compiled(x), stem(x)) < 1e-6
        with pytest.raises(ValueError, match=r"x must have shape \(B, in_chans, height, width\) = \(B, 3, 12, 12\)"):
            stem(x[..., :-1])
