"""Mixer block: ``channel_mixing(token_mixing(x))`` in one pass over the batch, without dropout.

The CPU kernel runs the two mixing kernels image by image: token mixing writes an image's output,
and channel mixing then updates those rows in place while they are still in L2, instead of
reading the whole (B, P, D) activation back from memory in a second op. FusedMixerLayer calls it
whenever autograd is not recording and dropout is off (inference); its backward is the two ops'
backward kernels, after recomputing the token-mixing output. CUDA runs the two ops' Triton
kernels one after the other. CPU kernel: csrc/cpu/mixer_block.cpp.
"""
from __future__ import annotations

import re

import torch

from ..reference import functional as reference
from ._fused_op import LIB, MLP_PARAMS, warn_fallback_once
from .channel_mixing import channel_mixing
from .token_mixing import token_mixing

HALVES = (("token_", token_mixing), ("channel_", channel_mixing))
PARAM_NAMES = tuple(prefix + name for prefix, _ in HALVES for name in MLP_PARAMS)
_SUB_NAMES = re.compile(r"\b(" + "|".join(MLP_PARAMS) + r")\b")


class MixerBlockOp:
    """``mixerkern::mixer_block(x, *token params, *channel params, eps, approximate)`` and its backward.

    The same interface as :class:`FusedOp` (checks, settings, reference, registration), for
    an op whose settings are eps and approximate only (no dropout) and that saves nothing.
    """
    name, param_names, layout = "mixer_block", PARAM_NAMES, "(B, num_patches, dim)"
    normalized, activation, autocast, x_dims, cuda, train_op = True, False, True, 3, "triton", None

    def __init__(self):
        params = ", ".join(f"Tensor {p}" for p in PARAM_NAMES)
        LIB.define(f"mixer_block(Tensor x, {params}, float eps, str approximate) -> Tensor")
        LIB.define(f"mixer_block_backward(Tensor grad_out, Tensor x, {params}, float eps, str approximate) -> "
                   f"({', '.join(['Tensor'] * 13)})")
        self.forward_op = torch.ops.mixerkern.mixer_block.default
        self.backward_op = torch.ops.mixerkern.mixer_block_backward.default
        torch.library.register_fake("mixerkern::mixer_block", self._fake_forward, lib=LIB)
        torch.library.register_fake("mixerkern::mixer_block_backward", self._fake_backward, lib=LIB)
        torch.library.register_autograd("mixerkern::mixer_block", self._backward, setup_context=self._setup_context,
                                        lib=LIB)
        for device in ("CPU", "CUDA"):  # composed of the two ops' kernels, which dispatch per device
            LIB.impl("mixer_block_backward", self._composed_backward, device)

    # ---- checks and settings, as FusedOp ----------------------------------------------------------
    def check(self, x, params, approximate="none", dropout_p=0.0):
        """The two ops' checks, with the messages naming this op and its parameters."""
        for i, (prefix, op) in enumerate(HALVES):
            try:
                op.check(x, params[6 * i:6 * i + 6], approximate)
            except (TypeError, ValueError) as exc:
                message = _SUB_NAMES.sub(lambda m: prefix + m.group(1), str(exc))
                raise type(exc)(message.replace(f"mixerkern.{op.name}", f"mixerkern.{self.name}")) from None

    def out_shape(self, x, params) -> tuple:
        return tuple(x.shape)

    def settings(self, eps=1e-6, approximate="none", dropout_p=0.0, seed=None) -> tuple:
        return (eps, approximate)

    def reference_kwargs(self, eps=1e-6, approximate="none", mask=None) -> dict:
        return {"eps": eps, "approximate": approximate}

    reference = staticmethod(reference.mixer_block)

    # ---- kernels composed of the two ops --------------------------------------------------------
    @staticmethod
    def _composed_forward(x, *rest):
        *params, eps, approximate = rest
        y = token_mixing.forward_op(x, *params[:6], *token_mixing.settings(eps, approximate))
        return channel_mixing.forward_op(y, *params[6:], *channel_mixing.settings(eps, approximate))

    @staticmethod
    def _composed_backward(grad_out, x, *rest):
        *params, eps, approximate = rest
        tok, chan = params[:6], params[6:]
        y = token_mixing.forward_op(x, *tok, *token_mixing.settings(eps, approximate))
        dy, *chan_grads = channel_mixing.backward_op(grad_out, y, *chan, *channel_mixing.settings(eps, approximate))
        dx, *tok_grads = token_mixing.backward_op(dy, x, *tok, *token_mixing.settings(eps, approximate))
        return (dx, *tok_grads, *chan_grads)

    def _fake_forward(self, x, *rest):
        self.check(x, rest[:12], rest[13])
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _fake_backward(self, grad_out, x, *rest):
        return (torch.empty_like(x, memory_format=torch.contiguous_format), *(torch.empty_like(p) for p in rest[:12]))

    def _setup_context(self, ctx, inputs, output):
        ctx.save_for_backward(*inputs[:13])
        ctx.scalars = inputs[13:]

    def _backward(self, ctx, grad_out):
        return (*self.backward_op(grad_out.contiguous(), *ctx.saved_tensors, *ctx.scalars), None, None)

    def register_cuda_kernels(self):
        LIB.impl("mixer_block", self._composed_forward, "CUDA")

    def register_reference_cpu_kernels(self, reason: str):
        def kernel(*args):
            warn_fallback_once(reason)
            return self._composed_forward(*args)  # the two ops' fallbacks
        LIB.impl("mixer_block", kernel, "CPU")

    # ---- functional entry point ---------------------------------------------------------------
    def __call__(self, x, *params, eps: float | None = None, approximate: str = "none", dropout_p: float = 0.0):
        if len(params) != 12:
            raise TypeError(f"mixerkern.mixer_block: expected x and 12 parameters ({', '.join(PARAM_NAMES)}), "
                            f"got {len(params)} parameters")
        if dropout_p != 0.0:
            raise TypeError("mixerkern.mixer_block has no dropout (it is the inference path); use token_mixing "
                            "and channel_mixing for dropout_p > 0")
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, params = x.to(dtype), tuple(p.to(dtype) for p in params)
        self.check(x, params, approximate)
        return self.forward_op(x, *params, 1e-6 if eps is None else float(eps), approximate)


mixer_block = MixerBlockOp()
