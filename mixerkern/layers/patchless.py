"""FusedPatchlessLayer: the reference PatchlessLayer's parameters, run by the bare token/channel MLP ops."""
import torch

from ..ops import channel_mlp, token_mlp
from ..reference.patchless import PatchlessLayer


class FusedPatchlessLayer(PatchlessLayer):
    """Drop-in for :class:`mixerkern.reference.PatchlessLayer`: same constructor, same state_dict.

    Each MLP is one fused op (GEMM, bias + GELU epilogue, GEMM, bias epilogue); the height MLP is a
    left-multiplication over the row axis, so the transposed map is never materialized.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        h, w = self.mlp_height, self.mlp_width
        u = token_mlp(x, h.fc1.weight, h.fc1.bias, h.fc2.weight, h.fc2.bias, approximate=self.approximate)
        return channel_mlp(u, w.fc1.weight, w.fc1.bias, w.fc2.weight, w.fc2.bias, approximate=self.approximate)
