import contextlib

import pytest
import torch

from conftest import bf16_isas, cpu_isa
from mixerkern.ops import channel_mixing_postnorm
from mixerkern.ops._dropout import draw_seed
from op_checks import random_grad_out, rel_err, run_with_grads
from op_suite import MixingOpSuite


class TestChannelMixingPostnorm(MixingOpSuite):
    op = channel_mixing_postnorm
    # (batch, tokens, dim, hidden): fnet-cifar100's block (64 tokens, dim = hidden = 256), 196 tokens
    # with dim 100, row counts that split unevenly into blocks, and K >= 512 (gemm.h's K blocks).
    shapes = [(3, 196, 100, 37), (2, 64, 256, 256), (2, 7, 17, 5), (1, 1, 3, 1), (3, 43, 65, 130), (2, 50, 520, 530)]
    small_shape = (2, 5, 6, 3)

    def mixed(self, params):
        """params with fc1's and fc2's weights in bf16, as autocast hands them over."""
        return [p.bfloat16() if n in self.op.autocast_weights else p for n, p in zip(self.op.param_names, params)]

    @pytest.mark.parametrize("isa", bf16_isas() or ["fallback"])
    def test_autocast_error_budget(self, isa):
        """Under autocast, x, the output and the LayerNorm stay fp32 and the GEMM weights go in as
        bf16 (the op's autocast_weights): output and every gradient within 2x of the reference's
        own error under autocast, against float64 truth."""
        assert self.op.autocast_weights == ("fc1_weight", "fc2_weight")
        with contextlib.nullcontext() if isa == "fallback" else cpu_isa(isa):
            for shape in self.shapes[:2]:
                x64, p64 = self.inputs(shape, torch.float64)
                g64 = random_grad_out(self.op, x64, p64)
                truth = run_with_grads(self.op.reference, x64, p64, g64)

                def under_autocast(fn):
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return run_with_grads(fn, x64.float(), [p.float() for p in p64], g64.float())
                fused, ref = under_autocast(self.op), under_autocast(self.op.reference)
                for name, f, r, t in zip(("out", "x", *self.op.param_names), (fused[0], *fused[1]),
                                         (ref[0], *ref[1]), (truth[0], *truth[1])):
                    assert f.dtype == torch.float32, name
                    assert rel_err(f, t) <= 2 * rel_err(r, t), (shape, name, rel_err(f, t), rel_err(r, t))

    def test_bf16_weights_with_fp32_x(self):
        """The mixed call is a registered form of the op (opcheck), and only the GEMM weights may
        be bf16: any other parameter in bf16 is refused, naming it, in Python and in C++."""
        x, params = self.inputs(self.small_shape)
        mixed = self.mixed(params)
        for op in (self.op.forward_op, self.op.train_op):
            leaves = [t.clone().requires_grad_() for t in (x, *mixed)]
            torch.library.opcheck(op, (*leaves, *self.op.settings(1e-6, "none", 0.1, draw_seed())))
        bad = [mixed[0].bfloat16(), *mixed[1:]]
        with pytest.raises(TypeError, match=r"ln_weight has dtype torch.bfloat16 but x has torch.float32; all must "
                                            r"match \(or fc1_weight and fc2_weight are bfloat16 with float32 x\)"):
            self.op(x, *bad)
        with pytest.raises(RuntimeError, match=r"ln_weight has dtype BFloat16 but x has Float"):
            self.op.forward_op(x, *bad, *self.op.settings())
        with pytest.raises(RuntimeError, match=r"fc1_weight has dtype BFloat16 but x has Float"):  # one alone
            self.op.forward_op(x, *mixed[:4], params[4], params[5], *self.op.settings())
