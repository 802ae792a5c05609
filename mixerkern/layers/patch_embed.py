"""FusedPatchEmbed: the reference PatchEmbed's parameters, run by the fused patch_embed op."""
import torch

from ..ops import patch_embed
from ..reference.patch_embed import PatchEmbed


class FusedPatchEmbed(PatchEmbed):
    """Drop-in for :class:`mixerkern.reference.PatchEmbed`: same constructor, same state_dict.

    Under ``torch.onnx.export`` it traces as the reference's plain torch ops (ONNX has no custom op).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return super().forward(x)
        self.check_input(x)
        return patch_embed(x, self.proj.weight, self.proj.bias)
