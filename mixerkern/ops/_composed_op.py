"""The registration shared by the ops whose CPU forward is one kernel over several ops' work
(mixer_blocks, mixer_features) and whose backward and CUDA forward compose those ops' kernels."""
from __future__ import annotations

import torch

from ._fused_op import LIB, warn_fallback_once


class ComposedOp:
    """Defines ``<name>(args) -> Tensor`` and ``<name>_backward(Tensor grad_out, args<backward_extra>)
    -> (backward_returns)``, and registers the subclass's fake kernels, autograd, composed backward
    (CPU and CUDA) and composed forward (CUDA, and the CPU fallback). The CPU forward kernel is C++."""
    name: str

    def __init__(self, args: str, backward_returns: str, backward_extra: str = ""):
        LIB.define(f"{self.name}({args}) -> Tensor")
        LIB.define(f"{self.name}_backward(Tensor grad_out, {args}{backward_extra}) -> ({backward_returns})")
        self.registered = getattr(torch.ops.mixerkern, self.name).default
        self.registered_backward = getattr(torch.ops.mixerkern, f"{self.name}_backward").default
        torch.library.register_fake(f"mixerkern::{self.name}", self._fake_forward, lib=LIB)
        torch.library.register_fake(f"mixerkern::{self.name}_backward", self._fake_backward, lib=LIB)
        torch.library.register_autograd(f"mixerkern::{self.name}", self._backward, setup_context=self._setup_context,
                                        lib=LIB)
        for device in ("CPU", "CUDA"):  # composed of other ops' kernels, which dispatch per device
            LIB.impl(f"{self.name}_backward", self._composed_backward, device)

    def register_cuda_kernels(self):
        LIB.impl(self.name, self._composed_forward, "CUDA")

    def register_reference_cpu_kernels(self, reason: str):
        def kernel(*args):
            warn_fallback_once(reason)
            return self._composed_forward(*args)  # the composed ops' fallbacks
        LIB.impl(self.name, kernel, "CPU")
