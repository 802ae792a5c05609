"""FusedFNetLayer: the reference FNetLayer's parameters, with Fourier mixing + residual + LN1 as one
fused op and the feed-forward sub-layer as another."""
import torch

from ..ops import channel_mixing_postnorm, fourier_mixing
from ..ops.fourier_mixing import fourier_mixing_as_matmuls
from ..reference.fnet import FNetLayer


class FusedFNetLayer(FNetLayer):
    """Drop-in for :class:`mixerkern.reference.FNetLayer`: same constructor, same state_dict.

    The feed-forward sub-layer LN2(y + Drop(MLP(y))) runs as one ``channel_mixing_postnorm``: the
    residual add and LN2 happen on the rows while they are still in cache, GELU and the counter-hash
    dropout inside the GEMMs (torch's own dropout draws a Bernoulli mask at ~20 ns per element: the
    largest single cost of an eager FNet training step). When autograd records, the op's forward also
    saves fc1's output and the residual sum, so its backward runs four GEMMs, not six.
    Under ``torch.onnx.export`` both sub-layers trace as plain torch ops (ONNX has neither custom op
    nor a real-input 2-D FFT): real matmuls for the Fourier mixing, the reference feed-forward.
    """

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        mix = fourier_mixing_as_matmuls if torch.onnx.is_in_onnx_export() else fourier_mixing
        return mix(x, self.norm1.weight, self.norm1.bias, eps=self.eps)

    def ffn(self, y: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return super().ffn(y)
        mlp, norm = self.mlp, self.norm2
        fcs = (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
        settings = dict(approximate=self.approximate, dropout_p=self.dropout if self.training else 0.0)
        return channel_mixing_postnorm(y, norm.weight, norm.bias, *fcs, eps=self.eps, **settings)
