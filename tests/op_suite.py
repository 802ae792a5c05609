"""The test contract every fused op must meet; test_<op>.py subclasses it with the op, its inputs and shapes."""
from __future__ import annotations

import contextlib

import pytest
import torch

import mixerkern
from conftest import bf16_isas, compiled_isas, cpu_isa
from op_checks import (FP32_FWD_RTOL, assert_error_budget, assert_close_to_reference, make_mixing_inputs,
                       make_mlp_inputs, random_grad_out, rel_err, run_with_grads)
from mixerkern.ops._dropout import dropout_mask, draw_seed


class FusedOpSuite:
    op = None            # the FusedOp under test
    shapes = ()          # input-shape cases for `inputs`, odd ones included
    odd_depth_shape = None  # odd depths in both GEMMs: the bf16-dot table's pads (bf16 budget test)
    small_shape = None   # for gradcheck/opcheck

    def inputs(self, shape, dtype=torch.float32):
        """Fresh random (x, [params]) for one shape case."""
        raise NotImplementedError

    def bad_shape_cases(self, x, params):
        """(args, message regex) pairs that must raise ValueError: wrong parameter or x sizes."""
        raise NotImplementedError

    def needs_activation(self):
        if not self.op.activation:
            pytest.skip(f"{self.op.name} has no GELU or dropout")

    def needs_training_forward(self, train=True):
        if train and self.op.train_op is None:
            pytest.skip(f"{self.op.name} saves no activations for its backward")

    def registered_forwards(self):
        """The registered forwards that autograd differentiates: the op, and the output of its
        training forward (whose backward reads the saved activations) if it has one."""
        forwards = [self.op.forward_op]
        if self.op.train_op is not None:
            forwards.append(lambda *a: self.op.train_op(*a)[0])
        return forwards

    # ---- correctness against the reference ---------------------------------------------------
    @pytest.mark.parametrize("isa", compiled_isas() or ["fallback"])
    def test_fp32_matches_reference(self, isa):
        for shape in self.shapes:
            x, params = self.inputs(shape)
            if isa == "fallback":
                assert_close_to_reference(self.op, x, params)
                continue
            with cpu_isa(isa):
                assert_close_to_reference(self.op, x, params)

    @pytest.mark.parametrize("train", [False, True])
    @pytest.mark.parametrize("approximate", ["none", "tanh"])
    @pytest.mark.parametrize("dropout_p", [0.0, 0.3])
    def test_gelu_and_dropout_variants(self, approximate, dropout_p, train):
        self.needs_activation()
        self.needs_training_forward(train)
        x, params = self.inputs(self.shapes[0])
        assert_close_to_reference(self.op, x, params, dropout_p=dropout_p, approximate=approximate, eps=1e-5,
                                  train=train)

    def test_training_forward_saves_what_the_backward_recomputes(self):
        """<op>_train returns the op's output plus the activations its backward would recompute;
        the backward gives the same gradients from them, and rejects anything else."""
        self.needs_training_forward()
        x, params = self.inputs(self.shapes[0])
        settings = self.op.settings(1e-5, "tanh", 0.3, draw_seed())
        out, saved = self.op.train_op(x, *params, *settings)
        assert torch.equal(out, self.op.forward_op(x, *params, *settings))
        assert saved.shape == self.op.saved_shape(tuple(x.shape), self.op.param_shapes(params))
        assert saved.dtype == torch.float32
        g = random_grad_out(self.op, x, params)
        for a, b in zip(self.op.backward_op(g, x, *params, *settings, saved),
                        self.op.backward_op(g, x, *params, *settings)):
            assert rel_err(a, b) < 1e-6
        with pytest.raises(RuntimeError, match=r"saved must be what .*_train returned"):
            self.op.backward_op(g, x, *params, *settings, saved[:, :-1])
        with pytest.raises(RuntimeError, match=r"saved must be what .*_train returned"):
            self.op.backward_op(g, x, *params, *settings, saved.double())

    @pytest.mark.parametrize("isa", bf16_isas() or ["fallback"])
    @pytest.mark.parametrize("approximate", ["none", "tanh"])
    def test_bf16_error_budget(self, approximate, isa):
        if approximate != "none":
            self.needs_activation()
        with contextlib.nullcontext() if isa == "fallback" else cpu_isa(isa):
            for shape in (*self.shapes[:2], *filter(None, [self.odd_depth_shape])):
                x, params = self.inputs(shape, torch.float64)
                assert_error_budget(self.op, x, params, approximate)

    def test_autocast_precision(self):
        """Ops autocast like Linear run in bf16; those that end in the LayerNorm of a residual stream
        (op.autocast False) stay in x's precision, as LayerNorm does."""
        x, params = self.inputs(self.shapes[0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.op(x, *params)
        assert out.dtype == (torch.bfloat16 if self.op.autocast else x.dtype)
        # With autocast_weights the GEMMs take bf16 operands (their error budget: test_<op>.py).
        tol = 2e-2 if self.op.autocast or getattr(self.op, "autocast_weights", ()) else FP32_FWD_RTOL
        assert rel_err(out, self.op.reference(x, *params, **self.op.reference_kwargs())) < tol

    def test_gradcheck_float64(self):
        x, params = self.inputs(self.small_shape, torch.float64)
        seed = draw_seed()
        for forward in self.registered_forwards():
            for approximate, p in (("none", 0.0), ("tanh", 0.25))[:2 if self.op.activation else 1]:
                settings = self.op.settings(1e-5, approximate, p, seed)
                fn = lambda *t: forward(*t, *settings)  # noqa: E731
                leaves = [t.clone().requires_grad_() for t in (x, *params)]
                assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5)

    def test_opcheck(self):
        ops = [self.op.forward_op] + [self.op.train_op] * (self.op.train_op is not None)
        for dtype in (torch.float32, torch.bfloat16):
            x, params = self.inputs(self.small_shape, dtype)
            leaves = [t.requires_grad_() for t in (x, *params)]
            for op in ops:
                torch.library.opcheck(op, (*leaves, *self.op.settings(1e-6, "none", 0.1, draw_seed())))

    def test_generic_path_matches_avx512(self):
        isas = compiled_isas()
        if len(isas) < 2:
            pytest.skip(f"only {isas} available on this CPU")
        x, params = self.inputs(self.shapes[0])
        g = random_grad_out(self.op, x, params)
        results = {}
        for isa in isas:
            with cpu_isa(isa):
                results[isa] = run_with_grads(self.op, x, params, g)
        (a_out, a_grads), *others = results.values()  # each ISA against the first
        for b_out, b_grads in others:
            assert rel_err(a_out, b_out) < 1e-6
            for ga, gb in zip(a_grads, b_grads):
                assert rel_err(ga, gb) < 1e-5

    # ---- dropout -----------------------------------------------------------------------------
    def test_dropout_reproducible_and_statistically_right(self):
        self.needs_activation()
        x, params = self.inputs(self.shapes[0])
        torch.manual_seed(1)
        a = self.op(x, *params, dropout_p=0.4)
        torch.manual_seed(1)
        b = self.op(x, *params, dropout_p=0.4)
        c = self.op(x, *params, dropout_p=0.4)
        assert torch.equal(a, b) and not torch.equal(a, c)
        mask = dropout_mask(draw_seed(), (64, 256, 256), 0.4)
        keep = (mask > 0).double().mean().item()
        assert abs(keep - 0.6) < 5 * (0.6 * 0.4 / mask.numel()) ** 0.5  # within 5 sigma
        assert torch.allclose(mask[mask > 0], torch.tensor(1 / 0.6))

    # ---- shapes and bad input ----------------------------------------------------------------
    def test_batch_zero(self):
        x, params = self.inputs(self.shapes[0])
        x = x[:0].requires_grad_()
        out = self.op(x, *params)
        assert out.shape == self.op.out_shape(x, params)
        out.sum().backward()
        assert x.grad.shape == x.shape

    def test_non_contiguous_input(self):
        x, params = self.inputs(self.shapes[0])
        xt = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, non-contiguous strides
        assert not xt.is_contiguous()
        assert rel_err(self.op(xt, *params), self.op.reference(x, *params)) < 1e-5

    def test_nan_propagates_like_reference(self):
        x, params = self.inputs(self.shapes[0])
        x[0, 1, 2] = float("nan")
        out, ref = self.op(x, *params), self.op.reference(x, *params)
        assert torch.equal(out.isnan(), ref.isnan())
        assert rel_err(out[~out.isnan()], ref[~ref.isnan()]) < 1e-5

    def test_bad_input_errors_name_the_argument(self):
        x, params = self.inputs(self.shapes[0])
        names = self.op.param_names
        with pytest.raises(ValueError, match=rf"x must be {self.op.x_dims}-D"):
            self.op(x[0], *params)
        for args, message in self.bad_shape_cases(x, params):
            with pytest.raises(ValueError, match=message):
                self.op(*args)
        with pytest.raises(TypeError, match=r"x must be float32, bfloat16 or float64"):
            self.op(x.half(), *[p.half() for p in params])
        with pytest.raises(TypeError, match=rf"{names[-1]} has dtype torch.float64"):
            self.op(x, *params[:-1], params[-1].double())
        with pytest.raises(ValueError, match=rf"{names[-2]} is on meta"):
            self.op(x, *params[:-2], params[-2].to("meta"), params[-1])
        with pytest.raises(TypeError, match=r"expected x and"):
            self.op(x, *params[:-1])

    def test_compiled_op_rejects_bad_shapes_too(self):
        """The C++ kernel repeats the checks, for callers that bypass the Python API."""
        if mixerkern.cpu_isa() == "none":
            pytest.skip("compiled kernels not loaded")
        x, params = self.inputs(self.shapes[0])
        with pytest.raises(RuntimeError, match=rf"{self.op.param_names[-1]} must have shape"):
            self.op.forward_op(x, *params[:-1], params[-1][:-1], *self.op.settings())
        if self.op.activation:
            with pytest.raises(RuntimeError, match=r"approximate must be"):
                self.op.forward_op(x, *params, *self.op.settings(approximate="sigmoid"))


class MixingOpSuite(FusedOpSuite):
    """Token and channel mixing: shapes are (batch, num_patches, dim, hidden)."""

    def inputs(self, shape, dtype=torch.float32):
        return make_mixing_inputs(self.op.name, *shape, dtype=dtype)

    def bad_shape_cases(self, x, params):
        return [((x, params[0], params[1], params[2][:, :-1], *params[3:]), r"fc1_weight must have shape"),
                ((x[..., :-1], *params), r"ln_weight must have shape")]


class MlpOpSuite(FusedOpSuite):
    """The bare token and channel MLPs: shapes are (batch, rows, cols, hidden)."""

    def inputs(self, shape, dtype=torch.float32):
        return make_mlp_inputs(self.op.name, *shape, dtype=dtype)

    def bad_shape_cases(self, x, params):
        return [((x, params[0][:, :-1], *params[1:]), r"fc1_weight must have shape"),
                ((x, *params[:3], params[3][:-1]), r"fc2_bias must have shape")]

    def test_eps_does_not_apply(self):
        x, params = self.inputs(self.small_shape)
        with pytest.raises(TypeError, match=r"has no LayerNorm: eps does not apply"):
            self.op(x, *params, eps=1e-5)
