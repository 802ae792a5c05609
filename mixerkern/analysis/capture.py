"""Activations of an :class:`~mixerkern.models.MlpClassifier`: each block's sub-block outputs, or any module's.

Stage labels are ``L<layer>B<sub-block>``: L2B1 is the second sub-block output of block 2, e.g. for a
Mixer block the residual stream after its channel MLP. A block contributes the stages its
``forward_stages(x)`` returns (``type(block).STAGES`` names them: Mixer token_mixing, channel_mixing;
gMLP spatial_gating (the gate's (B, P, hidden/2) output), block; FNet fourier_mixing (after norm1),
block). Fused layers compute these with their own ops, so the stages match what the fused model
computes; forward hooks could not see inside their custom ops.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..models import MlpClassifier


def _check_model(model: nn.Module) -> MlpClassifier:
    if not isinstance(model, MlpClassifier):
        raise TypeError(f"model must be a mixerkern.models.MlpClassifier, got {type(model).__name__}")
    return model


def block_stages(block: nn.Module) -> tuple[str, ...]:
    """Names of the stages ``block`` contributes (a block without ``forward_stages`` has one: its output)."""
    return tuple(getattr(block, "STAGES", ())) if hasattr(block, "forward_stages") else ("block",)


def stage_labels(model: MlpClassifier) -> list[str]:
    """``L<layer>B<sub-block>`` for every stage of ``model``, in forward order."""
    _check_model(model)
    return [f"L{i}B{j}" for i, block in enumerate(model.blocks) for j in range(len(block_stages(block)))]


@torch.no_grad()
def capture(model: MlpClassifier, images: torch.Tensor, labels: Iterable[str] | None = None
            ) -> dict[str, torch.Tensor]:
    """Stage outputs (label -> (B, P, features) tensor) of ``model`` on preprocessed ``images``
    (B, C, H, W), in eval mode under no_grad, in forward order; ``labels`` keeps only those."""
    model = _check_model(model)
    wanted = None if labels is None else set(labels)
    if wanted is not None and (unknown := wanted - set(stage_labels(model))):
        raise ValueError(f"labels: unknown stage(s) {sorted(unknown)}; valid: {stage_labels(model)}")
    was_training = model.training
    model.eval()
    try:
        # forward_features' path (stem, pos_embed, blocks), with each block split into its stages.
        x = model.stem(images)
        if model.pos_embed is not None:
            x = x + model.pos_embed
        out: dict[str, torch.Tensor] = {}
        for i, block in enumerate(model.blocks):
            stages = block.forward_stages(x) if hasattr(block, "forward_stages") else [block(x)]
            expected = len(block_stages(block))
            if len(stages) != expected:
                raise RuntimeError(f"blocks.{i}.forward_stages returned {len(stages)} tensors, its STAGES "
                                   f"name {expected}")
            for j, stage in enumerate(stages):
                if wanted is None or f"L{i}B{j}" in wanted:
                    out[f"L{i}B{j}"] = stage
            x = stages[-1]
        return out
    finally:
        model.train(was_training)


def module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


@torch.no_grad()
def capture_modules(model: nn.Module, images: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named submodules (forward hooks) during ``model(images)``, in eval mode.

    Modules whose weights a fused op uses directly (the MLPs and norms inside fused blocks, and
    ``stem.proj``) never run as modules, so they have no output: that is an error naming them.
    """
    names = list(names)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or not n]
    if unknown:
        raise ValueError(f"names: unknown module(s) {unknown}; valid: {module_names(model)}")
    out: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module, args, output):
            if isinstance(output, torch.Tensor):
                out.setdefault(name, output.detach())  # the first call, should a module be reused
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    silent = [n for n in names if n not in out]
    if silent:
        raise ValueError(f"module(s) {silent} produced no tensor output in the forward pass (a fused op uses "
                         f"their weights directly, or they return no tensor); use a reference model "
                         f"(mixerkern.models.load(..., fused=False)) or a stage label")
    return {n: out[n] for n in names}


def patch_map(activation: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """One example's (P, C) or (C, P) activation as (C, grid_h, grid_w), P = grid_h * grid_w.

    The patch axis is the one of length P; if both are, the first (the layout of the residual
    stream, (P, C)) is taken.
    """
    p = grid[0] * grid[1]
    if activation.dim() != 2 or p not in activation.shape:
        raise ValueError(f"activation must be (patches={p}, channels) or (channels, patches={p}) for the "
                         f"{grid[0]}x{grid[1]} patch grid, got shape {tuple(activation.shape)}")
    tokens_first = activation.shape[0] == p
    a = activation.T if tokens_first else activation
    return a.reshape(a.shape[0], *grid)
