"""FusedMixerLayer: the reference MixerLayer's parameters, run by the fused mixing ops; and
BlockSequence, which runs consecutive fused Mixer layers at inference as one op."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module

from ..ops import channel_mixing, mixer_blocks, token_mixing
from ..reference.mixer import MixerLayer


class FusedMixerLayer(MixerLayer):
    """Drop-in for :class:`mixerkern.reference.MixerLayer`: same constructor, same state_dict.

    With dropout active, the two sub-blocks run as ``token_mixing`` and ``channel_mixing``.
    Otherwise the layer is one ``mixer_blocks`` call: at inference its kernel channel-mixes each
    image's rows while token mixing has just left them in cache, and when autograd records it runs
    the same two ops (whose training forwards save what their backward needs).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        settings = self.block_settings()
        if settings is None:
            return self.forward_stages(x)[-1]
        eps, approximate = settings
        return mixer_blocks(x, *self.block_params(), eps=eps, approximate=approximate)

    def block_settings(self) -> tuple[float, str] | None:
        """``mixer_blocks``' (eps, approximate) when this layer can run as it (dropout off, both
        norms share eps), else None: it runs as the two ops."""
        if (self.training and self.dropout > 0) or self.norm1.eps != self.norm2.eps:
            return None
        return self.norm1.eps, self.approximate

    def block_params(self) -> list[torch.Tensor]:
        """The 12 tensors ``mixer_blocks`` takes per block, in its order."""
        return [t for norm, mlp in ((self.norm1, self.mlp_tokens), (self.norm2, self.mlp_channels))
                for t in (norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of the two sub-block ops; the last is forward(x)."""
        p, stages = self.dropout if self.training else 0.0, []
        for norm, mlp, op in ((self.norm1, self.mlp_tokens, token_mixing),
                              (self.norm2, self.mlp_channels, channel_mixing)):
            x = op(x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
                   eps=norm.eps, approximate=self.approximate, dropout_p=p)
            stages.append(x)
        return stages


def hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run forward hooks, which must see its own input and output."""
    return bool(module._forward_hooks or module._forward_pre_hooks or _module._global_forward_hooks
                or _module._global_forward_pre_hooks)


class BlockSequence(nn.Sequential):
    """nn.Sequential (same children, same state_dict) that runs each run of consecutive
    :class:`FusedMixerLayer` s that can run as ``mixer_blocks`` (no dropout, equal settings, no
    forward hooks) as one call: at inference each image then goes through all of them while its
    activation is in L2. Everything else runs module by module, as in nn.Sequential."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        run, settings = [], None
        for block in self:
            # Exact type: a subclass may change the math the op computes.
            mine = block.block_settings() if type(block) is FusedMixerLayer and not hooked(block) else None
            if run and mine != settings:
                x, run = self._run(run, x, settings), []
            if mine is None:
                x = block(x)
            else:
                run.append(block)
                settings = mine
        return self._run(run, x, settings) if run else x

    @staticmethod
    def _run(blocks: list[FusedMixerLayer], x: torch.Tensor, settings: tuple[float, str]) -> torch.Tensor:
        eps, approximate = settings
        return mixer_blocks(x, *(t for block in blocks for t in block.block_params()), eps=eps,
                            approximate=approximate)
