"""FusedFNetLayer: the reference FNetLayer's parameters, with Fourier mixing + residual + LN fused,
and the feed-forward branch as the fused channel_mlp op."""
import torch

from ..ops import channel_mlp, fourier_mixing
from ..ops.fourier_mixing import fourier_mixing_as_matmuls
from ..reference.fnet import FNetLayer


class FusedFNetLayer(FNetLayer):
    """Drop-in for :class:`mixerkern.reference.FNetLayer`: same constructor, same state_dict.

    The feed-forward branch runs as ``channel_mlp`` (GELU in the first GEMM's output pass, the
    counter-hash dropout in the second's epilogue): torch's own dropout draws a Bernoulli mask at
    ~20 ns per element, which made it the largest single cost of an FNet training step here.
    Under ``torch.onnx.export`` both branches trace as plain torch ops (ONNX has neither custom op
    nor a real-input 2-D FFT): real matmuls for the Fourier mixing, the reference FFN.
    """

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        mix = fourier_mixing_as_matmuls if torch.onnx.is_in_onnx_export() else fourier_mixing
        return mix(x, self.norm1.weight, self.norm1.bias, eps=self.eps)

    def ffn(self, y: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return super().ffn(y)
        mlp = self.mlp
        return channel_mlp(y, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
                           approximate=self.approximate, dropout_p=self.dropout if self.training else 0.0)
