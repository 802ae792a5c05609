"""FusedgMLPLayer: the reference gMLPLayer's parameters, with the spatial gating unit fused."""
import torch
import torch.nn.functional as F

from ..ops import spatial_gating
from ..reference.gmlp import gMLPLayer


class FusedgMLPLayer(gMLPLayer):  # noqa: N801
    """Drop-in for :class:`mixerkern.reference.gMLPLayer`: same constructor, same state_dict.

    LN and fc1 (bias included) run as torch's LayerNorm and GEMM; GELU, dropout, the gate LN, the
    spatial projection and the gate product are one fused op on fc1's output.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[fused gate output g, out] as ``forward`` computes them; out is forward(x)."""
        mlp, gate = self.mlp_channels, self.mlp_channels.gate
        z = F.linear(F.layer_norm(x, (self.dim,), self.norm.weight, self.norm.bias, self.eps),
                     mlp.fc1.weight, mlp.fc1.bias)
        g = spatial_gating(z, gate.norm.weight, gate.norm.bias, gate.proj.weight, gate.proj.bias,
                           eps=self.gate_eps, approximate=self.approximate,
                           dropout_p=self.dropout if self.training else 0.0)
        return [g, x + F.linear(g, mlp.fc2.weight, mlp.fc2.bias)]
