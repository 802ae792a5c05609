"""Mixer blocks: ``channel_mixing(token_mixing(x))`` for each block in turn, without dropout.

The CPU kernel takes each image through every block before the next image: its activation stays in
L2 from the first block's input to the last block's output (token mixing in place after the first
block, channel mixing updating each block's rows in place), instead of a round trip through memory
and a fresh output tensor per op. FusedMixerLayer calls it with one block, and
:class:`mixerkern.layers.BlockSequence` with each run of consecutive fused Mixer layers, whenever
dropout is off. When autograd records, this entry point runs the per-block token_mixing and
channel_mixing ops instead, whose forwards save what their backward kernels read; the registered
op's own backward (for callers of ``registered``) recomputes each block's intermediate activations
with the two ops' forwards and runs their backward kernels, last block first. CUDA runs the two ops' Triton kernels block by block. CPU kernel: csrc/cpu/mixer_blocks.cpp.

Python passes the parameters flat, block after block: ``mixer_blocks(x, *params)`` with each
block's 12 tensors in PARAM_NAMES order; the registered op takes them as one ``Tensor[]``.
"""
from __future__ import annotations

import re

import torch

from ..reference import functional as reference
from ._composed_op import ComposedOp
from ._fused_op import MLP_PARAMS
from .channel_mixing import channel_mixing
from .token_mixing import token_mixing

HALVES = (("token_", token_mixing), ("channel_", channel_mixing))
PARAM_NAMES = tuple(prefix + name for prefix, _ in HALVES for name in MLP_PARAMS)
BLOCK_PARAMS = len(PARAM_NAMES)
_SUB_NAMES = re.compile(r"\b(" + "|".join(MLP_PARAMS) + r")\b")


def _blocks(params):
    """The flat parameters as (token params, channel params) per block."""
    half = BLOCK_PARAMS // 2
    return [(params[i:i + half], params[i + half:i + BLOCK_PARAMS]) for i in range(0, len(params), BLOCK_PARAMS)]


class MixerBlocksOp(ComposedOp):
    """``mixerkern::mixer_blocks(x, Tensor[] params, eps, approximate)`` and its backward.

    The same interface as :class:`FusedOp` (checks, settings, reference, registration) for an op
    whose settings are eps and approximate only (no dropout) and that saves nothing.
    ``forward_op`` and ``backward_op`` take the parameters flat, as the other ops' do;
    ``registered`` is the OpOverload itself (``Tensor[] params``).
    """
    name, param_names, layout = "mixer_blocks", PARAM_NAMES, "(B, num_patches, dim)"
    normalized, activation, autocast, x_dims, cuda, train_op = True, False, True, 3, "triton", None

    def __init__(self):
        super().__init__("Tensor x, Tensor[] params, float eps, str approximate", "Tensor, Tensor[]")

    def forward_op(self, x, *rest):
        *params, eps, approximate = rest
        return self.registered(x, list(params), eps, approximate)

    def backward_op(self, grad_out, x, *rest):
        *params, eps, approximate = rest
        dx, grads = self.registered_backward(grad_out, x, list(params), eps, approximate)
        return (dx, *grads)

    # ---- checks and settings, as FusedOp ----------------------------------------------------------
    def check(self, x, params, approximate="none", dropout_p=0.0):
        """The two ops' checks per block, with the messages naming this op, the block and the parameter."""
        if not params or len(params) % BLOCK_PARAMS:
            raise TypeError(f"mixerkern.{self.name}: expected x and {BLOCK_PARAMS} parameters per block "
                            f"({', '.join(PARAM_NAMES)}), got {len(params)} parameters")
        for block, halves in enumerate(_blocks(params)):
            for (prefix, op), half in zip(HALVES, halves):
                try:
                    op.check(x, half, approximate)
                except (TypeError, ValueError) as exc:
                    message = _SUB_NAMES.sub(lambda m: f"block {block} {prefix}{m.group(1)}", str(exc))
                    raise type(exc)(message.replace(f"mixerkern.{op.name}", f"mixerkern.{self.name}")) from None

    def out_shape(self, x, params) -> tuple:
        return tuple(x.shape)

    def settings(self, eps=1e-6, approximate="none", dropout_p=0.0, seed=None) -> tuple:
        return (eps, approximate)

    def reference_kwargs(self, eps=1e-6, approximate="none", mask=None) -> dict:
        return {"eps": eps, "approximate": approximate}

    reference = staticmethod(reference.mixer_blocks)

    # ---- kernels composed of the two ops --------------------------------------------------------
    @staticmethod
    def _halves(eps, approximate):
        return [(op, op.settings(eps, approximate)) for _, op in HALVES]

    @classmethod
    def _composed_forward(cls, x, params, eps, approximate):
        (tok, tok_set), (chan, chan_set) = cls._halves(eps, approximate)
        for tp, cp in _blocks(params):
            x = chan.forward_op(tok.forward_op(x, *tp, *tok_set), *cp, *chan_set)
        return x

    @classmethod
    def _composed_backward(cls, grad_out, x, params, eps, approximate):
        (tok, tok_set), (chan, chan_set) = cls._halves(eps, approximate)
        blocks, inputs = _blocks(params), []  # inputs: each block's x and token-mixing output
        for tp, cp in blocks:
            y = tok.forward_op(x, *tp, *tok_set)
            inputs.append((x, y))
            x = chan.forward_op(y, *cp, *chan_set)
        grads = []
        for (tp, cp), (x, y) in zip(reversed(blocks), reversed(inputs)):
            dy, *chan_grads = chan.backward_op(grad_out, y, *cp, *chan_set)
            grad_out, *tok_grads = tok.backward_op(dy, x, *tp, *tok_set)
            grads = [*tok_grads, *chan_grads, *grads]
        return grad_out, grads

    def _fake_forward(self, x, params, eps, approximate):
        self.check(x, params, approximate)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _fake_backward(self, grad_out, x, params, eps, approximate):
        return torch.empty_like(x, memory_format=torch.contiguous_format), [torch.empty_like(p) for p in params]

    def _setup_context(self, ctx, inputs, output):
        x, params, eps, approximate = inputs
        ctx.save_for_backward(x, *params)
        ctx.settings = (eps, approximate)

    def _backward(self, ctx, grad_out):
        x, *params = ctx.saved_tensors
        dx, grads = self.registered_backward(grad_out.contiguous(), x, params, *ctx.settings)
        return dx, grads, None, None

    # ---- functional entry point ---------------------------------------------------------------
    def __call__(self, x, *params, eps: float | None = None, approximate: str = "none", dropout_p: float = 0.0):
        if dropout_p != 0.0:
            raise TypeError(f"mixerkern.{self.name} has no dropout (it is the inference path); use token_mixing "
                            "and channel_mixing for dropout_p > 0")
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, params = x.to(dtype), tuple(p.to(dtype) for p in params)
        self.check(x, params, approximate)
        eps = 1e-6 if eps is None else float(eps)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
            # Training: the per-block ops, whose forwards save what their backward kernels read
            # (this op's own backward would recompute every block's activations first).
            for tp, cp in _blocks(params):
                x = channel_mixing(token_mixing(x, *tp, eps=eps, approximate=approximate), *cp, eps=eps,
                                   approximate=approximate)
            return x
        return self.forward_op(x, *params, eps, approximate)


mixer_blocks = MixerBlocksOp()
