"""FusedMixerLayer: the reference MixerLayer's parameters, run by the two fused ops."""
import torch

from ..ops import channel_mixing, token_mixing
from ..reference.mixer import MixerLayer


class FusedMixerLayer(MixerLayer):
    """Drop-in for :class:`mixerkern.reference.MixerLayer`: same constructor, same state_dict."""

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of ``forward``'s two ops; the last is forward(x)."""
        p, stages = self.dropout if self.training else 0.0, []
        for norm, mlp, op in ((self.norm1, self.mlp_tokens, token_mixing),
                              (self.norm2, self.mlp_channels, channel_mixing)):
            x = op(x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
                   eps=norm.eps, approximate=self.approximate, dropout_p=p)
            stages.append(x)
        return stages
