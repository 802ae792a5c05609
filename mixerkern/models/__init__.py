"""Ready-made MLP image classifiers: ``create_model(name, fused=True, **overrides)``.

>>> model = create_model("mixer-cifar100")                  # the seed experiment, fused blocks
>>> model = create_model("mixer-b16", fused=False, num_classes=10)
>>> model.config                                            # plain dict; create_model(**model.config) rebuilds it
"""
from __future__ import annotations

from typing import Any

import torch

from .blocks import BLOCKS, BlockFamily, build_block, register_block
from .checkpoint import load, save
from .classifier import MlpClassifier, PatchEmbed
from .patchless import PatchlessAutoencoder, PatchlessMixer

# A preset's "arch" field picks the model class (default: the patch-based classifier).
ARCHITECTURES: dict[str, type[torch.nn.Module]] = {
    "patch": MlpClassifier, "patchless": PatchlessMixer, "patchless-ae": PatchlessAutoencoder}


def _paper_mixer(dim: int, depth: int, token_hidden: int, channel_hidden: int) -> dict[str, Any]:
    # Tolstikhin et al. 2021, Table 1: 224 px ImageNet, 16 px patches, final LayerNorm.
    return dict(image_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=dim, depth=depth,
                block="mixer", token_hidden=token_hidden, channel_hidden=channel_hidden, dropout=0.0,
                block_dropout=None, pos_embed=False, final_norm=True, eps=1e-6, approximate="none")


def _paper_gmlp(dim: int) -> dict[str, Any]:
    # Liu et al. 2021, Table 1 (gMLP-Ti/S/B): 224 px, 16 px patches, 30 blocks, hidden 6 x dim,
    # final LayerNorm. Gate LayerNorm eps 1e-5 as in timm's weights.
    return dict(image_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=dim, depth=30, block="gmlp",
                hidden=6 * dim, dropout=0.0, block_dropout=None, pos_embed=False, final_norm=True, eps=1e-6,
                gate_eps=1e-5, approximate="none")


# Every field of a preset is a keyword of MlpClassifier (block-specific ones go to the block builder),
# and any of them may be overridden in create_model. New presets: add an entry here.
PRESETS: dict[str, dict[str, Any]] = {
    # Keras example "MLP-Mixer, FNet and gMLP on CIFAR-100" (images resized to 64 px); its blocks
    # use the same dropout rate (0.2) inside the MLPs as before the head.
    "mixer-cifar100": dict(
        image_size=64, patch_size=8, in_chans=3, num_classes=100, dim=256, depth=4, block="mixer",
        token_hidden=64, channel_hidden=64, dropout=0.2, block_dropout=None, pos_embed=False,
        final_norm=False, eps=1e-6, approximate="none"),
    "mixer-s16": _paper_mixer(dim=512, depth=8, token_hidden=256, channel_hidden=2048),
    "mixer-b16": _paper_mixer(dim=768, depth=12, token_hidden=384, channel_hidden=3072),
    "mixer-l16": _paper_mixer(dim=1024, depth=24, token_hidden=512, channel_hidden=4096),
    # Keras example again: gMLP blocks with fc1 to 2 x dim.
    "gmlp-cifar100": dict(
        image_size=64, patch_size=8, in_chans=3, num_classes=100, dim=256, depth=4, block="gmlp",
        hidden=512, dropout=0.2, block_dropout=None, pos_embed=False, final_norm=False, eps=1e-6,
        gate_eps=1e-6, approximate="none"),
    "gmlp-ti16": _paper_gmlp(dim=128),
    "gmlp-s16": _paper_gmlp(dim=256),
    "gmlp-b16": _paper_gmlp(dim=512),
    # Keras example: FNet blocks with a dim -> dim FFN and a learned positional embedding.
    "fnet-cifar100": dict(
        image_size=64, patch_size=8, in_chans=3, num_classes=100, dim=256, depth=4, block="fnet",
        hidden=256, dropout=0.2, block_dropout=None, pos_embed=True, final_norm=False, eps=1e-6,
        approximate="none"),
    # FNet-Base's sizes (Lee-Thorp et al. 2021) on 224 px images with 16 px patches. Every block
    # already ends in a LayerNorm, so there is no final one.
    "fnet-b16": dict(
        image_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=768, depth=12, block="fnet",
        hidden=3072, dropout=0.0, block_dropout=None, pos_embed=True, final_norm=False, eps=1e-6,
        approximate="none"),
    # Patchless Mixer (seed: "Patchless MLP-Mixer"): rows and columns of the HWC map, no patches.
    "patchless-mnist": dict(arch="patchless", image_size=28, in_chans=1, num_classes=10, depth=16,
                            approximate="none"),
    "patchless-cifar10": dict(arch="patchless", image_size=32, in_chans=3, num_classes=10, depth=32,
                              approximate="none"),
    "patchless-ae-mnist": dict(arch="patchless-ae", image_size=28, in_chans=1, depth=2, approximate="none"),
}


def list_models() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return dict(PRESETS[name])


def create_model(name: str, *, fused: bool = True, **overrides: Any) -> torch.nn.Module:
    """Builds preset ``name`` with fused (default) or reference blocks; ``overrides`` replace preset fields.

    ``model.config`` is the resulting field dict plus ``name``, so ``create_model(**model.config)``
    rebuilds the same architecture.
    """
    config = get_preset(name)
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise TypeError(f"create_model({name!r}): unknown override(s) {unknown}; valid: {sorted(config)}")
    config.update(overrides)
    arch = config.pop("arch", "patch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"create_model({name!r}): unknown arch {arch!r}; available: {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[arch](fused=fused, **config)
    model.config = {"name": name, **({"arch": arch} if arch != "patch" else {}), **model.config}
    return model


def flops_per_image(model_or_name: torch.nn.Module | str, **overrides: Any) -> int:
    """Forward FLOPs per image of the GEMMs (stem, block MLPs, head), a multiply-add counting 2.

    Elementwise work (LayerNorm, GELU, residuals, pooling) is left out: this is the numerator of
    a compute-roofline fraction. A name (plus overrides) is built on the meta device, at no cost.
    """
    if isinstance(model_or_name, str):
        with torch.device("meta"):
            model_or_name = create_model(model_or_name, fused=False, **overrides)
    elif overrides:
        raise TypeError("flops_per_image: overrides are only accepted with a model name")
    if not isinstance(model_or_name, tuple(ARCHITECTURES.values())):
        raise TypeError(f"flops_per_image: expected a model name or a create_model model, "
                        f"got {type(model_or_name).__name__}")
    return model_or_name.gemm_flops()


__all__ = ["ARCHITECTURES", "PRESETS", "BLOCKS", "BlockFamily", "MlpClassifier", "PatchEmbed", "PatchlessMixer",
           "PatchlessAutoencoder", "build_block", "create_model",
           "flops_per_image", "get_preset", "list_models", "load", "register_block", "save"]
