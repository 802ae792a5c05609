"""Swap reference layers for fused ones (and back) inside any model.

>>> model = mixerkern.fuse(model)     # every reference MixerLayer -> FusedMixerLayer (and so on), same weights
>>> model = mixerkern.unfuse(model)   # and back

The replacement takes over the *same* Parameter (and buffer) objects, so nothing is copied, dtype,
device and ``requires_grad`` stay per tensor, and an optimizer built before the swap keeps working.
Train/eval mode is kept per submodule. Hooks registered on a replaced layer are not carried over.
A replaced top-level layer shares its parameters with the returned one; use the returned one.
"""
from __future__ import annotations

from torch import nn

from .layers import FusedFNetLayer, FusedgMLPLayer, FusedMixerLayer, FusedPatchEmbed, FusedPatchlessLayer
from .reference import FNetLayer, MixerLayer, PatchEmbed, PatchlessLayer, gMLPLayer

# reference class -> fused class. Each pair must share constructor and state_dict, and the reference
# class must have ``config()`` returning its constructor kwargs. Matching is on the exact type:
# fused classes subclass their reference class, and user subclasses may change the math.
FUSED_LAYERS: dict[type[nn.Module], type[nn.Module]] = {
    MixerLayer: FusedMixerLayer,
    gMLPLayer: FusedgMLPLayer,
    FNetLayer: FusedFNetLayer,
    PatchlessLayer: FusedPatchlessLayer,
    PatchEmbed: FusedPatchEmbed,
}


def _tensors_device(module: nn.Module):
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return None if tensor is None else tensor.device


def _convert(module: nn.Module, target: type[nn.Module]) -> nn.Module:
    # Build on the same device (any non-persistent buffers land there), then hand over the tensors.
    device = _tensors_device(module)
    if device is None:
        new = target(**module.config())
    else:
        with device:
            new = target(**module.config())
    requires_grad = {name: p.requires_grad for name, p in module.named_parameters()}
    # keep_vars + assign: the new module holds the old Parameter objects themselves, not copies.
    new.load_state_dict(module.state_dict(keep_vars=True), strict=True, assign=True)
    for name, param in new.named_parameters():  # assign=True resets requires_grad to the new layer's
        param.requires_grad_(requires_grad[name])
    old_modules = dict(module.named_modules())
    for name, sub in new.named_modules():
        if name in old_modules:
            sub.training = old_modules[name].training
    return new


def _swap(module: nn.Module, table: dict[type[nn.Module], type[nn.Module]]) -> nn.Module:
    target = table.get(type(module))
    if target is not None:
        return _convert(module, target)
    for name, child in list(module.named_children()):
        new_child = _swap(child, table)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def fuse(model: nn.Module) -> nn.Module:
    """Replaces every reference layer in ``model`` (or ``model`` itself) by its fused twin; returns the model."""
    return _swap(model, FUSED_LAYERS)


def unfuse(model: nn.Module) -> nn.Module:
    """Inverse of :func:`fuse`: fused layers back to the plain-PyTorch reference layers."""
    return _swap(model, {fused: ref for ref, fused in FUSED_LAYERS.items()})
