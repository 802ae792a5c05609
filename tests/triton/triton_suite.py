"""The contract every op's Triton kernels meet; tests/triton/test_triton_<op>.py subclasses it.

On a GPU the op is called through torch's dispatcher (so the CUDA registration and autograd are
tested too); without one, the kernels' forward and backward launchers run directly on CPU tensors
under the Triton interpreter. The reference is the same plain-PyTorch math the CPU kernels meet.
"""
from __future__ import annotations

import importlib

import pytest
import torch

from op_checks import FP32_FWD_RTOL, FP32_GRAD_RTOL, assert_error_budget, random_grad_out, rel_err, run_with_grads
from mixerkern.ops._dropout import dropout_mask, draw_seed
from mixerkern.triton.gemm import interpreting


def run_kernels(op, x, params, grad_out, approximate="none", dropout_p=0.0, seed=None, eps=1e-6):
    """(out, grads of (x, *params)) from the op's Triton kernels."""
    settings = op.settings(eps, approximate, dropout_p, seed)
    if x.is_cuda:
        return run_with_grads(lambda *t: op.forward_op(*t, *settings), x, params, grad_out)
    kernels = importlib.import_module(f"mixerkern.triton.{op.name}")
    return kernels.forward(x, *params, *settings), kernels.backward(grad_out, x, *params, *settings)


class TritonOpSuite:
    op = None          # the FusedOp
    shapes = ()        # small odd shapes (the interpreter runs every tile in numpy)
    make_inputs = None  # (shape, dtype) -> x, params  (float64 in, cast by the suite)

    def inputs(self, shape, dtype, device):
        x, params = type(self).make_inputs(*shape, dtype=torch.float64)
        return x.to(device, dtype), [p.to(device, dtype) for p in params]

    def compare(self, x, params, approximate="none", dropout_p=0.0):
        grad_out = random_grad_out(self.op, x, params)
        seed = draw_seed() if dropout_p > 0 else None
        mask = dropout_mask(seed, x.shape, dropout_p, x.dtype).to(x.device) if dropout_p > 0 else None
        out, grads = run_kernels(self.op, x, params, grad_out, approximate, dropout_p, seed)
        ref_out, ref_grads = run_with_grads(self.op.reference, x, params, grad_out,
                                            **self.op.reference_kwargs(approximate=approximate, mask=mask))
        return (out, grads), (ref_out, ref_grads)

    @pytest.fixture(autouse=True)
    def _exact_fp32(self):
        """tf32 off, so fp32 is judged at fp32 tolerances (tf32 is the user's choice, as for torch.matmul)."""
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        yield
        torch.backends.cuda.matmul.allow_tf32 = previous

    def test_fp32_forward_and_backward_match_reference(self, device):
        for shape in self.shapes:
            x, params = self.inputs(shape, torch.float32, device)
            (out, grads), (ref_out, ref_grads) = self.compare(x, params)
            assert out.shape == ref_out.shape and out.dtype == torch.float32
            assert rel_err(out, ref_out) <= FP32_FWD_RTOL, (shape, rel_err(out, ref_out))
            for name, g, r in zip(("x", *self.op.param_names), grads, ref_grads):
                assert g.shape == r.shape and g.dtype == r.dtype, name
                err = (g.double() - r.double()).norm().item()
                assert err <= FP32_GRAD_RTOL * r.double().norm().item() + 1e-6, (shape, name, rel_err(g, r))

    @pytest.mark.parametrize("approximate", ["none", "tanh"])
    def test_gelu_variants_and_dropout_use_the_cpu_kernels_mask(self, device, approximate):
        if not self.op.activation:
            pytest.skip(f"{self.op.name} has no GELU or dropout")
        x, params = self.inputs(self.shapes[0], torch.float32, device)
        (out, grads), (ref_out, ref_grads) = self.compare(x, params, approximate, dropout_p=0.3)
        assert rel_err(out, ref_out) <= FP32_FWD_RTOL
        for g, r in zip(grads, ref_grads):
            assert rel_err(g, r) <= FP32_GRAD_RTOL

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
    def test_low_precision_error_budget(self, device, dtype):
        """Error against float64 truth at most 2x the reference's own error in that dtype (2.5x under
        the interpreter, whose fp32 -> bf16 conversion truncates where a GPU rounds to nearest)."""
        x64, p64 = self.inputs(self.shapes[0], torch.float64, device)
        budget = 2.5 if interpreting() and dtype == torch.bfloat16 else 2.0
        assert_error_budget(self.op, x64, p64, dtype=dtype, budget=budget,
                            run=lambda x, p, g, approximate: run_kernels(self.op, x, p, g, approximate))

    def test_empty_batch(self, device):
        x, params = self.inputs(self.shapes[0], torch.float32, device)
        x = x[:0]
        out, grads = run_kernels(self.op, x, params, random_grad_out(self.op, x, params))
        assert out.shape == self.op.out_shape(x, params) and grads[0].shape == x.shape
        assert all(float(g.abs().sum()) == 0 for g in grads[1:])  # no samples, no parameter gradient

    # ---- only with a GPU: the registered op itself ---------------------------------------------
    def test_registered_cuda_op_passes_opcheck(self, device):
        if device != "cuda":
            pytest.skip("needs a CUDA device")
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            x, params = self.inputs(self.shapes[0], dtype, device)
            leaves = [t.requires_grad_() for t in (x, *params)]
            for op in [self.op.forward_op] + [self.op.train_op] * (self.op.train_op is not None):
                torch.library.opcheck(op, (*leaves, *self.op.settings(1e-6, "none", 0.1, draw_seed())))

    def test_training_forward_saves_nothing_on_cuda(self, device):
        """The CUDA kernels recompute in the backward: <op>_train returns an empty ``saved``, and
        the op's public entry point (which calls it whenever autograd records) still matches."""
        if device != "cuda" or self.op.train_op is None:
            pytest.skip("needs a CUDA device and an op with a training forward")
        x, params = self.inputs(self.shapes[0], torch.float32, device)
        settings = self.op.settings()
        out, saved = self.op.train_op(x, *params, *settings)
        assert saved.numel() == 0 and torch.equal(out, self.op.forward_op(x, *params, *settings))
        grad_out = random_grad_out(self.op, x, params)
        _, grads = run_with_grads(self.op, x, params, grad_out)
        _, ref_grads = run_with_grads(self.op.reference, x, params, grad_out, **self.op.reference_kwargs())
        for g, r in zip(grads, ref_grads):
            assert rel_err(g, r) <= FP32_GRAD_RTOL

    def test_float64_is_refused_on_cuda_by_name(self, device):
        if device != "cuda":
            pytest.skip("needs a CUDA device")
        x, params = self.inputs(self.shapes[0], torch.float64, device)
        with pytest.raises(TypeError, match=r"x must be float32, bfloat16 or float16 on cuda"):
            self.op(x, *params)
