"""FusedMixerLayer: the reference MixerLayer's parameters, run by the fused mixing ops."""
import torch

from ..ops import channel_mixing, mixer_block, token_mixing
from ..reference.mixer import MixerLayer


class FusedMixerLayer(MixerLayer):
    """Drop-in for :class:`mixerkern.reference.MixerLayer`: same constructor, same state_dict.

    When autograd records or dropout is active, the two sub-blocks run as ``token_mixing`` and
    ``channel_mixing`` (whose training forward saves what their backward needs). Otherwise
    (inference) the whole layer is one ``mixer_block``, which channel-mixes each image's rows
    while token mixing has just left them in cache.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        records = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        if records or (self.training and self.dropout > 0) or self.norm1.eps != self.norm2.eps:
            return self.forward_stages(x)[-1]
        params = [t for norm, mlp in ((self.norm1, self.mlp_tokens), (self.norm2, self.mlp_channels))
                  for t in (norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)]
        return mixer_block(x, *params, eps=self.norm1.eps, approximate=self.approximate)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of the two sub-block ops; the last is forward(x)."""
        p, stages = self.dropout if self.training else 0.0, []
        for norm, mlp, op in ((self.norm1, self.mlp_tokens, token_mixing),
                              (self.norm2, self.mlp_channels, channel_mixing)):
            x = op(x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
                   eps=norm.eps, approximate=self.approximate, dropout_p=p)
            stages.append(x)
        return stages
