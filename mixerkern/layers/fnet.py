"""FusedFNetLayer: the reference FNetLayer's parameters, with Fourier mixing + residual + LN fused."""
import torch
import torch.nn.functional as F

from ..ops import fourier_mixing
from ..ops.fourier_mixing import fourier_mixing_as_matmuls
from ..reference.fnet import FNetLayer


class FusedFNetLayer(FNetLayer):
    """Drop-in for :class:`mixerkern.reference.FNetLayer`: same constructor, same state_dict.

    Under ``torch.onnx.export`` the Fourier mixing is traced as real matmuls (ONNX has neither the
    custom op nor a real-input 2-D FFT), which compute the same function.
    """

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        mix = fourier_mixing_as_matmuls if torch.onnx.is_in_onnx_export() else fourier_mixing
        return mix(x, self.norm1.weight, self.norm1.bias, eps=self.eps)
