"""The fused ops, registered with torch.library under the ``mixerkern`` namespace.

Importing this package defines every op (schema, fake kernel, autograd) and loads the compiled
CPU kernels. If they cannot be built, each op falls back to its reference math with a one-time
warning, unless MIXERKERN_REQUIRE_COMPILED=1, which makes that an error. MIXERKERN_DISABLE_CPP=1
skips the compiled kernels on purpose (to test or debug the fallback). CUDA tensors dispatch to the
Triton kernels in mixerkern/triton/, imported at their first use (triton is the optional `gpu` extra),
except patch_embed's, which are torch's own (a gather and one cuBLAS GEMM).
"""
from __future__ import annotations

import importlib.util
import os

import torch

from .. import _extension
from .channel_mixing import channel_mixing
from .channel_mixing_postnorm import channel_mixing_postnorm
from .channel_mlp import channel_mlp
from .fourier_mixing import fourier_mixing
from .mixer_blocks import mixer_blocks
from .mixer_features import mixer_features
from .patch_embed import patch_embed
from .spatial_gating import spatial_gating
from .token_mixing import token_mixing
from .token_mlp import token_mlp

OPS = {"token_mixing": token_mixing, "channel_mixing": channel_mixing, "spatial_gating": spatial_gating,
       "fourier_mixing": fourier_mixing, "token_mlp": token_mlp, "channel_mlp": channel_mlp,
       "channel_mixing_postnorm": channel_mixing_postnorm, "patch_embed": patch_embed,
       "mixer_blocks": mixer_blocks, "mixer_features": mixer_features}

for _op in OPS.values():
    _op.register_cuda_kernels()

_load_error: str | None = None
if os.environ.get("MIXERKERN_DISABLE_CPP") == "1":
    _load_error = "disabled by MIXERKERN_DISABLE_CPP=1"
else:
    try:
        _extension.load()
        for _name in OPS:  # a library that loads but lacks a kernel must not pass as compiled
            if not torch._C._dispatch_has_kernel_for_dispatch_key(f"mixerkern::{_name}", "CPU"):
                raise RuntimeError(f"the compiled library registers no CPU kernel for {_name}")
    except Exception as exc:  # noqa: BLE001 - any build/load failure means "use the fallback"
        if os.environ.get("MIXERKERN_REQUIRE_COMPILED") == "1":
            raise
        lines = str(exc).strip().splitlines()
        _load_error = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
if _load_error is not None:
    for _op in OPS.values():
        _op.register_reference_cpu_kernels(_load_error)


def cpu_isa() -> str:
    """The instruction set the compiled CPU kernels dispatch to: 'avx512bf16' (AVX-512 with bf16
    dot products), 'avx512', 'generic', 'avx512bf16-emulated' (tests only), or 'none'."""
    return torch.ops.mixerkern_cpu.get_isa() if _load_error is None else "none"


def set_cpu_isa(isa: str) -> str:
    """Forces the CPU kernels onto 'avx512bf16', 'avx512', 'generic', 'avx512bf16-emulated' or back
    to 'auto'; returns the ISA now in use.

    The environment variable MIXERKERN_CPU_ISA sets the same thing when the library loads.
    """
    if _load_error is not None:
        raise RuntimeError(f"mixerkern: compiled CPU kernels are not loaded ({_load_error})")
    return torch.ops.mixerkern_cpu.set_isa(isa)


def set_fourier_algorithm(algorithm: str) -> str:
    """Forces fourier_mixing's CPU kernels onto 'gemm' (real DFT as GEMMs) or 'fft', or back to 'auto'
    (chosen per shape). Returns the setting now in force."""
    if _load_error is not None:
        raise RuntimeError(f"mixerkern: compiled CPU kernels are not loaded ({_load_error})")
    return torch.ops.mixerkern_cpu.set_fourier_algorithm(algorithm)


def backend_info() -> dict:
    """Which implementation serves each op on each device, plus the build's status."""
    cpu = f"cpp-{cpu_isa()}" if _load_error is None else "reference-fallback"
    cuda = "triton" if importlib.util.find_spec("triton") is not None else "unavailable (pip install mixerkern[gpu])"
    info = {name: {"cpu": cpu, "cuda": cuda if op.cuda == "triton" else "torch"} for name, op in OPS.items()}
    info["cpu_isa"] = cpu_isa()
    info["cpu_library"] = str(_extension.build_dir()) if _load_error is None else None
    info["cpu_load_error"] = _load_error
    return info
