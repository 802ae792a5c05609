"""Mixer features: a Mixer classifier's pooled features, (B, dim), from its images.

``mean over patches of norm(blocks(patch_embed(images)))``: the patch embedding, Mixer blocks
without dropout, an optional final LayerNorm, and the mean over patches that the head reads. The CPU
kernel takes each image through all of it while its activation stays in the thread's scratch (L2):
no token tensor is written, read back or allocated. MlpClassifier calls it at inference when the
stem, all blocks and the norm are fused or plain LayerNorm, without positional embedding or hooks.
When autograd records, this entry point runs the ops one by one (patch_embed, mixer_blocks, which
then runs token_mixing and channel_mixing, layer_norm and mean); the registered op's own backward
(for callers of ``registered``) recomputes the tokens and composes the ops' backward kernels. CUDA
runs the ops one by one. CPU kernel: csrc/cpu/mixer_features.cpp.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reference import functional as reference
from ._composed_op import ComposedOp
from .mixer_blocks import BLOCK_PARAMS, mixer_blocks
from .patch_embed import patch_embed


def _layer_norm(x, weight, bias, eps):
    return x if weight is None else F.layer_norm(x, x.shape[-1:], weight, bias, eps)


class MixerFeaturesOp(ComposedOp):
    """``mixerkern::mixer_features(images, stem_weight, stem_bias, Tensor[] params, norm_weight?,
    norm_bias?, eps, approximate)`` and its backward. ``params``: each block's 12 tensors, as in
    :mod:`mixerkern.ops.mixer_blocks` (none for a classifier without blocks)."""
    name, cuda, train_op = "mixer_features", "triton", None
    param_names = ("stem_weight", "stem_bias")  # then each block's mixer_blocks.PARAM_NAMES

    def out_shape(self, images, params) -> tuple:
        return images.shape[0], params[0].shape[0]

    def __init__(self):
        super().__init__("Tensor images, Tensor stem_weight, Tensor stem_bias, Tensor[] params, Tensor? norm_weight, "
                         "Tensor? norm_bias, float eps, str approximate", "Tensor, Tensor, Tensor, Tensor[], Tensor[]",
                         ", bool images_grad")

    # ---- checks ---------------------------------------------------------------------------------
    def check(self, images, stem_weight, stem_bias, params, norm_weight=None, norm_bias=None, approximate="none"):
        """The stem's and the blocks' checks (messages naming this op, stem_* and block N), and the norm's."""
        try:
            patch_embed.check(images, (stem_weight, stem_bias))
        except (TypeError, ValueError) as exc:
            message = str(exc).replace("mixerkern.patch_embed", f"mixerkern.{self.name}")
            for name in ("weight", "bias"):
                message = message.replace(f" {name} ", f" stem_{name} ").replace(f"{name}.", f"stem_{name}.")
            raise type(exc)(message) from None
        patch, dim = stem_weight.shape[-1], stem_weight.shape[0]
        tokens = images.new_empty((0, (images.shape[2] // patch) * (images.shape[3] // patch), dim))
        if len(params) % BLOCK_PARAMS:
            raise TypeError(f"mixerkern.{self.name}: expected {BLOCK_PARAMS} block parameters per block, got "
                            f"{len(params)}")
        if params:
            try:
                mixer_blocks.check(tokens, params, approximate)
            except (TypeError, ValueError) as exc:
                raise type(exc)(str(exc).replace("mixerkern.mixer_blocks", f"mixerkern.{self.name}")) from None
        if (norm_weight is None) != (norm_bias is None):
            raise TypeError(f"mixerkern.{self.name}: norm_weight and norm_bias go together (the final LayerNorm)")
        for name, t in (("norm_weight", norm_weight), ("norm_bias", norm_bias)):
            if t is None:
                continue
            if t.dtype != images.dtype or t.device != images.device:
                raise TypeError(f"mixerkern.{self.name}: {name} must have the images' dtype and device "
                                f"({images.dtype}, {images.device}), got {t.dtype}, {t.device}")
            if tuple(t.shape) != (dim,):
                raise ValueError(f"mixerkern.{self.name}: {name} must have shape ({dim},), got {tuple(t.shape)}")

    @staticmethod
    def reference(images, stem_weight, stem_bias, *params, norm_weight=None, norm_bias=None, eps=1e-6,
                  approximate="none"):
        return reference.mixer_features(images, stem_weight, stem_bias, *params, norm_weight=norm_weight,
                                        norm_bias=norm_bias, eps=eps, approximate=approximate)

    # ---- kernels composed of the ops ------------------------------------------------------------
    @staticmethod
    def _composed_forward(images, stem_weight, stem_bias, params, norm_weight, norm_bias, eps, approximate):
        x = patch_embed.forward_op(images, stem_weight, stem_bias)
        if params:
            x = mixer_blocks.registered(x, params, eps, approximate)
        return _layer_norm(x, norm_weight, norm_bias, eps).mean(dim=1)

    @staticmethod
    def _composed_backward(grad_out, images, stem_weight, stem_bias, params, norm_weight, norm_bias, eps,
                           approximate, images_grad):
        tokens = patch_embed.forward_op(images, stem_weight, stem_bias)
        batch, patches, dim = tokens.shape
        g = (grad_out / patches).unsqueeze(1).expand(batch, patches, dim)  # the mean's backward
        norm_grads = []
        if norm_weight is not None:  # its backward reads the blocks' output; the blocks' own recompute theirs
            y = mixer_blocks.registered(tokens, params, eps, approximate) if params else tokens
            _, mean, rstd = torch.ops.aten.native_layer_norm(y, [dim], norm_weight, norm_bias, eps)
            g, dw, db = torch.ops.aten.native_layer_norm_backward(g, y, [dim], mean, rstd, norm_weight, norm_bias,
                                                                  [True, True, True])
            norm_grads = [dw, db]
        g, block_grads = g.contiguous(), []
        if params:
            g, block_grads = mixer_blocks.registered_backward(g, tokens, params, eps, approximate)
        dx, dw, db = patch_embed.backward_op(g, images, stem_weight, stem_bias, images_grad)
        return dx, dw, db, block_grads, norm_grads

    def _fake_forward(self, images, stem_weight, stem_bias, params, norm_weight, norm_bias, eps, approximate):
        self.check(images, stem_weight, stem_bias, params, norm_weight, norm_bias, approximate)
        return images.new_empty((images.shape[0], stem_weight.shape[0]))

    def _fake_backward(self, grad_out, images, stem_weight, stem_bias, params, norm_weight, norm_bias, eps,
                       approximate, images_grad):
        dx = torch.empty_like(images, memory_format=torch.contiguous_format) if images_grad else images.new_empty(0)
        norm = [torch.empty_like(t) for t in (norm_weight, norm_bias) if t is not None]
        return dx, torch.empty_like(stem_weight), torch.empty_like(stem_bias), [torch.empty_like(p) for p in params], norm

    def _setup_context(self, ctx, inputs, output):
        images, stem_weight, stem_bias, params, norm_weight, norm_bias, eps, approximate = inputs
        ctx.depth, ctx.norm = len(params), norm_weight is not None
        ctx.save_for_backward(images, stem_weight, stem_bias, *params,
                              *((norm_weight, norm_bias) if ctx.norm else ()))
        ctx.settings = (eps, approximate)

    def _backward(self, ctx, grad_out):
        images, stem_weight, stem_bias, *rest = ctx.saved_tensors
        params, norm = rest[:ctx.depth], rest[ctx.depth:] if ctx.norm else (None, None)
        images_grad = ctx.needs_input_grad[0]
        dx, dw, db, block_grads, norm_grads = self.registered_backward(
            grad_out.contiguous(), images, stem_weight, stem_bias, params, *norm, *ctx.settings, images_grad)
        nw, nb = norm_grads if ctx.norm else (None, None)
        return dx if images_grad else None, dw, db, block_grads, nw, nb, None, None

    # ---- functional entry point ---------------------------------------------------------------
    def __call__(self, images, stem_weight, stem_bias, *params, norm_weight=None, norm_bias=None,
                 eps: float | None = None, approximate: str = "none"):
        if images.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(images.device.type):
            dtype = torch.get_autocast_dtype(images.device.type)
            cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
            images, stem_weight, stem_bias, norm_weight, norm_bias = map(
                cast, (images, stem_weight, stem_bias, norm_weight, norm_bias))
            params = tuple(p.to(dtype) for p in params)
        self.check(images, stem_weight, stem_bias, params, norm_weight, norm_bias, approximate)
        eps = 1e-6 if eps is None else float(eps)
        tensors = (images, stem_weight, stem_bias, *params, norm_weight, norm_bias)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            # Training: the ops one by one, whose forwards save what their backward kernels read.
            x = patch_embed(images, stem_weight, stem_bias)
            if params:
                x = mixer_blocks(x, *params, eps=eps, approximate=approximate)
            return _layer_norm(x, norm_weight, norm_bias, eps).mean(dim=1)
        return self.registered(images, stem_weight, stem_bias, list(params), norm_weight, norm_bias, eps, approximate)


mixer_features = MixerFeaturesOp()
