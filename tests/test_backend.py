"""The compiled kernels must be the ones in use: a broken build must never hide behind the fallback."""
import os
import subprocess
import sys

import pytest
import torch

import mixerkern
from conftest import FALLBACK_ALLOWED, cpu_flags, cpu_isa, cpuinfo
from mixerkern.ops import OPS
from op_checks import make_mixing_inputs


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_compiled_cpu_kernels_are_active():
    info = mixerkern.backend_info()
    if FALLBACK_ALLOWED:
        pytest.skip(f"MIXERKERN_ALLOW_FALLBACK=1: {info}")
    assert info["cpu_load_error"] is None, f"C++ kernels failed to load: {info['cpu_load_error']}"
    for op in mixerkern.ops.OPS:
        assert info[op]["cpu"] in ("cpp-avx512bf16", "cpp-avx512", "cpp-generic"), info
    assert set(mixerkern.ops.OPS) == {"token_mixing", "channel_mixing", "spatial_gating", "fourier_mixing",
                                      "token_mlp", "channel_mlp", "channel_mixing_postnorm", "patch_embed",
                                      "mixer_blocks", "mixer_features"}
    assert info["patch_embed"]["cuda"] == "torch" and info["token_mixing"]["cuda"] != "torch"


def test_best_isa_is_chosen_by_default():
    if mixerkern.cpu_isa() == "none":
        pytest.skip("compiled kernels not loaded")
    flags = cpu_flags()
    has_avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    # The bf16-dot table only where vdpbf16ps outruns fp32 FMAs: AMD (see dispatch.cpp).
    bf16_dot = "avx512_bf16" in flags and cpuinfo("vendor_id") == "AuthenticAMD"
    best = ("avx512bf16" if bf16_dot else "avx512") if has_avx512 else "generic"
    result = run_python("import mixerkern; print(mixerkern.cpu_isa())", MIXERKERN_CPU_ISA="")
    assert result.stdout.strip().splitlines()[-1] == best, result.stderr
    if "avx512_bf16" not in flags:
        with pytest.raises(RuntimeError, match="lacks AVX512-BF16"):
            mixerkern.set_cpu_isa("avx512bf16")


def test_bf16_dot_table_replaces_only_its_bf16_kernels():
    """The avx512bf16 table (here with its dot product emulated) differs from avx512 in the bf16
    forwards and backwards of the mixing ops, and nothing else: fp32 runs the same kernels."""
    if not mixerkern.cpu_isa().startswith("avx512"):
        pytest.skip("no AVX-512 kernels here")
    x, token = make_mixing_inputs("token_mixing", 2, 20, 37, 9)
    _, channel = make_mixing_inputs("channel_mixing", 2, 20, 37, 51)
    cases = {"token_mixing": token, "channel_mixing": channel, "token_mlp": token[2:], "channel_mlp": channel[2:],
             "mixer_blocks": token + channel, "channel_mixing_postnorm": channel}
    for name, p in cases.items():
        op = OPS[name]
        for dtype in (torch.bfloat16, torch.float32):
            xs, ps = x.to(dtype), [t.to(dtype) for t in p]
            outs = []
            for isa in ("avx512", "avx512bf16-emulated"):
                with cpu_isa(isa):
                    outs.append(op.forward_op(xs, *ps, *op.settings()))
            assert torch.equal(*outs) == (dtype == torch.float32), (name, dtype)
    g = torch.randn_like(x)
    for name, p in (("token_mixing", token), ("channel_mixing", channel)):
        op = OPS[name]
        for dtype in (torch.bfloat16, torch.float32):
            xs, gs, ps = x.to(dtype), g.to(dtype), [t.to(dtype) for t in p]
            grads = []
            for isa in ("avx512", "avx512bf16-emulated"):
                with cpu_isa(isa):
                    grads.append(op.backward_op(gs, xs, *ps, *op.settings()))
            assert all(torch.equal(a, b) for a, b in zip(*grads)) == (dtype == torch.float32), (name, dtype)


def test_environment_variable_forces_portable_path():
    if mixerkern.cpu_isa() == "none":
        pytest.skip("compiled kernels not loaded")
    result = run_python("import mixerkern; print(mixerkern.cpu_isa())", MIXERKERN_CPU_ISA="generic")
    assert result.stdout.strip().splitlines()[-1] == "generic", result.stderr
    with pytest.raises(RuntimeError, match="isa must be"):
        mixerkern.set_cpu_isa("sse9")


def test_fallback_warns_once_and_reports_itself():
    # A training step too: the fallback's training forward saves nothing and its backward recomputes.
    code = ("import warnings, torch, mixerkern\n"
            "from mixerkern import FusedMixerLayer\n"
            "from mixerkern.reference import MixerLayer\n"
            "layer, ref = FusedMixerLayer(8, 16), MixerLayer(8, 16)\n"
            "ref.load_state_dict(layer.state_dict())\n"
            "x = torch.randn(2, 8, 16, requires_grad=True)\n"
            "x_ref = x.detach().clone().requires_grad_()\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    layer(x).sum().backward(); layer(torch.randn(2, 8, 16))\n"
            "ref(x_ref).sum().backward()\n"
            "print(sum('fall back' in str(x.message) for x in w), mixerkern.backend_info()['token_mixing']['cpu'],\n"
            "      torch.allclose(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6))\n")
    result = run_python(code, MIXERKERN_DISABLE_CPP="1")
    assert result.stdout.split() == ["1", "reference-fallback", "True"], result.stderr


def test_failed_build_is_an_error_when_compiled_kernels_are_required(tmp_path):
    # A compiler that always fails, in a fresh build directory: the import must fail loudly with
    # MIXERKERN_REQUIRE_COMPILED=1, and fall back (reporting why) without it.
    env = dict(MIXERKERN_BUILD_DIR=str(tmp_path), CXX="false", MIXERKERN_DISABLE_CPP="")
    code = "import mixerkern; print(mixerkern.backend_info()['token_mixing']['cpu'])"
    strict = run_python(code, MIXERKERN_REQUIRE_COMPILED="1", **env)
    assert strict.returncode != 0
    lenient = run_python(code, MIXERKERN_REQUIRE_COMPILED="0", **env)
    assert lenient.returncode == 0 and lenient.stdout.split()[-1] == "reference-fallback", lenient.stderr


def test_build_command_fails_when_the_compiler_does(tmp_path):
    """`python -m mixerkern.build` after the import's quiet build failed: it must show the failure
    and exit non-zero, not report the stale (here: absent) library as built."""
    env = dict(MIXERKERN_BUILD_DIR=str(tmp_path), CXX="false", MIXERKERN_DISABLE_CPP="", MIXERKERN_REQUIRE_COMPILED="0")
    result = subprocess.run([sys.executable, "-m", "mixerkern.build"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode != 0 and "the C++ build failed" in result.stderr, result.stdout + result.stderr
    assert "built:" not in result.stdout


def test_cuda_kernels_are_registered_without_touching_a_gpu_or_importing_triton():
    code = ("import sys, torch, mixerkern\n"
            "print('triton' in sys.modules, torch.cuda.is_initialized())\n"
            "print(all(torch._C._dispatch_has_kernel_for_dispatch_key(f'mixerkern::{n}{s}', 'CUDA')\n"
            "          for n, op in mixerkern.ops.OPS.items()\n"
            "          for s in ('', '_backward') + ('_train',) * (op.train_op is not None)))\n")
    result = run_python(code, TRITON_INTERPRET="0")
    assert result.stdout.split()[-3:] == ["False", "False", "True"], result.stderr
