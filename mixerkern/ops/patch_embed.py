"""Patch embedding: Conv2d with kernel = stride = patch on images (B, C, H, W), as (B, num_patches, dim).

Each image's patches are gathered into an L2-resident tile and multiplied by W^T, with the bias
added in the GEMM's epilogue: one pass over the image, no patch tensor, no bias copy. The backward
skips the image gradient (a GEMM as large as the forward's) unless x requires grad.
weight is Conv2d's (dim, in_chans, patch, patch); the patch size is its last dimension.
CPU kernel: csrc/cpu/patch_embed.cpp. CUDA: the reference math (a gather and one cuBLAS GEMM).
"""
from ..reference import functional as reference
from ._fused_op import FusedOp

PARAMS = ("weight", "bias")


def _expected_shapes(x_shape, shapes):
    _, chans, height, width = x_shape
    weight_shape = shapes["weight"]
    dim, patch = (weight_shape[0], weight_shape[-1]) if len(weight_shape) == 4 else (-1, -1)
    if len(weight_shape) == 4 and (patch < 1 or dim < 1):
        raise ValueError(f"weight must have a positive dim and patch size, got shape {weight_shape}")
    square = len(weight_shape) == 4 and weight_shape[1:] == (chans, patch, patch)
    if square and (height % patch or width % patch):
        raise ValueError(f"x's height and width must be multiples of the patch size {patch} (weight.shape[-1]), "
                         f"got x of shape {x_shape}")
    return dict(weight=(dim, chans, patch, patch), bias=(dim,))


def _output_shape(x_shape, shapes):
    batch, _, height, width = x_shape
    dim, patch = shapes["weight"][0], shapes["weight"][-1]
    return batch, (height // patch) * (width // patch), dim


patch_embed = FusedOp("patch_embed", PARAMS, reference.patch_embed, _expected_shapes,
                      layout="(B, in_chans, height, width) with weight (dim, in_chans, patch, patch)",
                      output_shape=_output_shape, activation=False, normalized=False, x_dims=4,
                      cuda="reference", x_grad_optional=True)
