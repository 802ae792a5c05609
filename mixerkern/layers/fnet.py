"""FusedFNetLayer: the reference FNetLayer's parameters, with Fourier mixing + residual + LN1 as one
fused op and the feed-forward sub-layer as another."""
import torch
import torch.nn.functional as F

from ..ops import channel_mixing_postnorm, channel_mlp, fourier_mixing
from ..ops.fourier_mixing import fourier_mixing_as_matmuls
from ..reference.fnet import FNetLayer


class FusedFNetLayer(FNetLayer):
    """Drop-in for :class:`mixerkern.reference.FNetLayer`: same constructor, same state_dict.

    The feed-forward sub-layer LN2(y + Drop(MLP(y))) runs, by measurement (benchmarks/RESULTS.md):
    * without autograd, as one ``channel_mixing_postnorm``: the residual add and LN2 happen on the
      rows while they are still in cache (1.12-1.21x the sub-layer's forward);
    * when autograd records, as the fused ``channel_mlp`` followed by torch's add and LayerNorm:
      channel_mixing_postnorm's backward recomputes the MLP's output (it saves only its inputs),
      one GEMM more than torch's LN, which saves that sum, and fwd+bwd ran 0.91-0.94x with dropout.
    Either way GELU and the counter-hash dropout are fused into the GEMMs (torch's own dropout
    draws a Bernoulli mask at ~20 ns per element: the largest single cost of an FNet training step).
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
        if torch.is_grad_enabled() and any(t.requires_grad for t in (y, norm.weight, norm.bias, *fcs)):
            return F.layer_norm(y + channel_mlp(y, *fcs, **settings), (self.dim,), norm.weight, norm.bias, self.eps)
        return channel_mixing_postnorm(y, norm.weight, norm.bias, *fcs, eps=self.eps, **settings)
