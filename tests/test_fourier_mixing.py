import contextlib

import pytest
import torch

import mixerkern
from conftest import compiled_isas, cpu_isa
from mixerkern.ops import fourier_mixing
from op_checks import assert_close_to_reference, make_fourier_inputs, rel_err
from op_suite import FusedOpSuite


@contextlib.contextmanager
def fourier_algorithm(name: str):
    mixerkern.set_fourier_algorithm(name)
    try:
        yield
    finally:
        mixerkern.set_fourier_algorithm("auto")


class TestFourierMixing(FusedOpSuite):
    op = fourier_mixing
    # (batch, tokens, dim): 196 tokens, the seed's 64 x 256, odd and prime sizes, a single token.
    # dim = 1 is tested on its own: LayerNorm over one channel (or two) makes dL/dx pure rounding noise.
    shapes = [(3, 196, 100), (4, 64, 256), (2, 7, 17), (2, 65, 33), (1, 1, 12), (2, 2, 3)]
    small_shape = (2, 5, 6)

    def inputs(self, shape, dtype=torch.float32):
        return make_fourier_inputs(*shape, dtype=dtype)

    def bad_shape_cases(self, x, params):
        return [((x, params[0][:-1], params[1]), r"ln_weight must have shape"),
                ((x[..., :-1], *params), r"ln_weight must have shape")]

    @pytest.mark.parametrize("algorithm", ["gemm", "fft"])
    @pytest.mark.parametrize("isa", compiled_isas() or ["fallback"])
    def test_each_algorithm_matches_reference(self, algorithm, isa):
        if isa == "fallback":
            pytest.skip("compiled kernels not loaded")
        with fourier_algorithm(algorithm), cpu_isa(isa):
            for shape in self.shapes:
                assert_close_to_reference(self.op, *self.inputs(shape))

    @pytest.mark.parametrize("algorithm", ["gemm", "fft"])
    def test_each_algorithm_passes_gradcheck(self, algorithm):
        if mixerkern.cpu_isa() == "none":
            pytest.skip("compiled kernels not loaded")
        x, params = self.inputs((2, 6, 5), torch.float64)
        leaves = [t.clone().requires_grad_() for t in (x, *params)]
        with fourier_algorithm(algorithm):
            assert torch.autograd.gradcheck(lambda *t: self.op.forward_op(*t, 1e-5), leaves, eps=1e-6, atol=1e-6,
                                            rtol=1e-5)

    @pytest.mark.parametrize("algorithm", ["gemm", "fft"])
    def test_dim_one(self, algorithm):
        """LN over a single channel outputs its bias whatever x is, so dL/dx is 0 up to rounding."""
        if mixerkern.cpu_isa() == "none":
            pytest.skip("compiled kernels not loaded")
        x, (w, b) = self.inputs((2, 13, 1))
        x.requires_grad_()
        with fourier_algorithm(algorithm):
            out = self.op(x, w, b)
        assert torch.equal(out, b.expand_as(out))
        g = torch.randn_like(out)
        dx, = torch.autograd.grad(out, x, g)
        assert dx.abs().max() < 1e-2 * g.abs().max()

    def test_196_tokens_in_bf16(self):
        """torch.fft refuses bf16 (and non-power-of-two fp16): the fused op must not."""
        x, params = self.inputs((2, 196, 100))
        out = self.op(x.bfloat16(), *[p.bfloat16() for p in params])
        assert out.dtype == torch.bfloat16
        assert rel_err(out, self.op.reference(x, *params)) < 2e-2
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps it in x's precision
            assert self.op(x, *params).dtype == torch.float32

    def test_settings_without_activation_are_rejected(self):
        x, params = self.inputs((2, 4, 8))
        with pytest.raises(TypeError, match=r"no GELU or dropout"):
            self.op(x, *params, dropout_p=0.1)

    def test_unknown_algorithm_is_a_clear_error(self):
        if mixerkern.cpu_isa() == "none":
            pytest.skip("compiled kernels not loaded")
        with pytest.raises(RuntimeError, match=r"must be 'auto', 'gemm' or 'fft'"):
            mixerkern.set_fourier_algorithm("dct")
