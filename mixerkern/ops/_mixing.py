"""Shared torch.library machinery for the "mixing" ops.

A mixing op is ``out = x + Drop(fc2(GELU(fc1(LN(x)))))`` applied along some axis of x (B, P, D):
token mixing acts across patches, channel mixing across channels. Both have the same argument list,
so one definition here gives each its schema, fake (meta) kernel, autograd formula and, when the
compiled kernels are missing, a reference CPU kernel. The device kernels live in csrc/<device>/.
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable

import torch

from . import _dropout

LIB = torch.library.Library("mixerkern", "FRAGMENT")

PARAM_NAMES = ("ln_weight", "ln_bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")
_ARGS = ("Tensor x, Tensor ln_weight, Tensor ln_bias, Tensor fc1_weight, Tensor fc1_bias, "
         "Tensor fc2_weight, Tensor fc2_bias, float eps, str approximate, float dropout_p, Tensor? seed")
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float64)

class MixingOp:
    """Defines ``mixerkern::<name>`` and ``mixerkern::<name>_backward``.

    ``expected_shapes(x_shape, fc1_weight_shape)`` returns the shape each parameter must have;
    ``reference`` is the plain-PyTorch math (mixerkern.reference.functional).
    """

    def __init__(self, name: str, reference: Callable, expected_shapes: Callable, layout: str):
        self.name, self.reference, self.expected_shapes = name, reference, expected_shapes
        self.layout = layout  # human-readable layout of x and the weights, for error messages
        LIB.define(f"{name}({_ARGS}) -> Tensor")
        LIB.define(f"{name}_backward(Tensor grad_out, {_ARGS}) -> "
                   "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")
        self.forward_op = getattr(torch.ops.mixerkern, name).default
        self.backward_op = getattr(torch.ops.mixerkern, f"{name}_backward").default
        torch.library.register_fake(f"mixerkern::{name}", self._fake_forward, lib=LIB)
        torch.library.register_fake(f"mixerkern::{name}_backward", self._fake_backward, lib=LIB)
        torch.library.register_autograd(f"mixerkern::{name}", self._backward,
                                        setup_context=self._setup_context, lib=LIB)

    # ---- argument checks (the C++ kernels repeat them with TORCH_CHECK) -------------------------
    def check(self, x, params, approximate, dropout_p):
        where = f"mixerkern.{self.name}"
        if x.dim() != 3:
            raise ValueError(f"{where}: x must be 3-D {self.layout}, got shape {tuple(x.shape)}")
        tensors = dict(x=x, **dict(zip(PARAM_NAMES, params)))
        for arg, t in tensors.items():
            if t.dtype not in SUPPORTED_DTYPES:
                raise TypeError(f"{where}: {arg} must be float32, bfloat16 or float64, got {t.dtype}")
            if t.dtype != x.dtype:
                raise TypeError(f"{where}: {arg} has dtype {t.dtype} but x has {x.dtype}; all must match")
            if t.device != x.device:
                raise ValueError(f"{where}: {arg} is on {t.device} but x is on {x.device}; all must match")
        expected = self.expected_shapes(tuple(x.shape), tuple(params[2].shape))
        for arg, t in zip(PARAM_NAMES, params):
            if tuple(t.shape) != expected[arg]:
                raise ValueError(f"{where}: {arg} must have shape {expected[arg]} for {self.layout} "
                                 f"with x of shape {tuple(x.shape)}, got {tuple(t.shape)}")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"{where}: approximate must be 'none' or 'tanh', got {approximate!r}")
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"{where}: dropout_p must be in [0, 1), got {dropout_p}")

    def _fake_forward(self, x, *rest):
        params, (eps, approximate, dropout_p, seed) = rest[:6], rest[6:]
        self.check(x, params, approximate, dropout_p)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _fake_backward(self, grad_out, x, *rest):
        return (torch.empty_like(x, memory_format=torch.contiguous_format),
                *(torch.empty_like(p) for p in rest[:6]))

    # ---- autograd: the backward kernel recomputes LN/GELU and regenerates the dropout mask -------
    @staticmethod
    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:7], inputs[10])
        ctx.scalars = inputs[7:10]

    def _backward(self, ctx, grad_out):
        x, *params, seed = ctx.saved_tensors
        grads = self.backward_op(grad_out.contiguous(), x, *params, *ctx.scalars, seed)
        return (*grads, None, None, None, None)

    # ---- reference kernels, used only when the compiled CPU kernels could not be loaded ----------
    def _reference_forward(self, x, *rest):
        params, (eps, approximate, dropout_p, seed) = rest[:6], rest[6:]
        self.check(x, params, approximate, dropout_p)
        mask = _dropout.dropout_mask(seed, x.shape, dropout_p, x.dtype) if dropout_p > 0 else None
        return self.reference(x, *params, eps=eps, approximate=approximate, mask=mask)

    def _reference_backward(self, grad_out, x, *rest):
        inputs = [t.detach().requires_grad_() for t in (x, *rest[:6])]
        with torch.enable_grad():
            out = self._reference_forward(*inputs, *rest[6:])
        return torch.autograd.grad(out, inputs, grad_out)

    def register_reference_cpu_kernels(self, reason: str):
        def warned(fn):
            def kernel(*args):
                warn_fallback_once(reason)
                return fn(*args)
            return kernel
        LIB.impl(self.name, warned(self._reference_forward), "CPU")
        LIB.impl(f"{self.name}_backward", warned(self._reference_backward), "CPU")

    # ---- functional entry point -------------------------------------------------------------------
    def __call__(self, x, ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, *,
                 eps: float = 1e-6, approximate: str = "none", dropout_p: float = 0.0):
        params = (ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            # Mirror autocast's treatment of Linear: run the whole fused op in the autocast dtype.
            dtype = torch.get_autocast_dtype(x.device.type)
            x, params = x.to(dtype), tuple(p.to(dtype) for p in params)
        self.check(x, params, approximate, dropout_p)  # clear errors before dispatch picks a device
        seed = _dropout.draw_seed() if dropout_p > 0 else None
        return self.forward_op(x, *params, float(eps), approximate, float(dropout_p), seed)


@functools.lru_cache(maxsize=None)
def warn_fallback_once(reason: str) -> None:
    warnings.warn(f"mixerkern: compiled CPU kernels unavailable ({reason}); the fused ops fall back "
                  "to the (slow) reference math. Run `python -m mixerkern.build` to see the build error.",
                  RuntimeWarning, stacklevel=3)
