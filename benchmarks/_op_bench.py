"""Op-level benchmark shared by the test_<op>.py files (one file per op).

Each op runs at the shapes it has in the first block of its model (mixer-cifar100 for token and
channel mixing, gmlp-cifar100 for spatial gating, fnet-cifar100 for Fourier mixing and the post-norm
channel mixing, patchless-cifar10 for the bare token and channel MLPs, mixer-cifar100's stem for
the patch embedding, mixer-cifar100's four blocks for mixer_blocks), 1 thread,
with providers ``eager`` (mixerkern.reference.functional), ``compile`` (torch.compile of that) and
``fused`` (mixerkern.functional). Passes:

* ``fwd``: the forward as it runs in training (inputs require grad, so autograd records the graph
  and saves what backward needs); one torch.compile graph then serves both passes.
* ``fwd+bwd``: that forward plus ``torch.autograd.grad`` of all inputs.
* ``infer``: the forward under ``torch.no_grad()``, for the ops whose kernel serves inference only
  (mixer_blocks, mixer_features: when autograd records they run the per-block ops, which the
  token and channel mixing rows time). mixer_blocks runs ``infer`` and ``fwd+bwd``, mixer_features
  ``infer`` only.

No dropout (dropout_p = 0): the reference takes an explicit mask while the fused op draws its own,
so only p = 0 is the same work for every provider; the model-level benchmark covers dropout.
"""
from __future__ import annotations

import functools
import math

import pytest
import torch

import mixerkern
from mixerkern.models import create_model, get_preset
from mixerkern.ops import OPS
from mixerkern.reference import FNetLayer, MixerLayer, PatchlessLayer, gMLPLayer
from mixerkern.reference import functional as reference

from ._common import (BATCH, DTYPES, PROVIDERS, assert_close, baseline_verdict, peak_probe, precision,
                      prepare_compiled, record, run_pedantic)

PASSES = ("fwd", "fwd+bwd")
THREADS = 1
ROUNDS, WARMUP_ROUNDS = 10, 2  # one call is a few ms to ~0.1 s
CONFIGS = [(pass_, dtype, provider) for pass_ in PASSES for dtype in DTYPES for provider in PROVIDERS]
INFERENCE_CONFIGS = [(pass_, dtype, provider) for pass_ in ("infer", "fwd+bwd") for dtype in DTYPES
                     for provider in PROVIDERS]


def block_config(model: str) -> dict:
    with torch.device("meta"):  # only the architecture is needed from the model
        return create_model(model, fused=False).blocks[0].config()


def mixing_case(op: str):
    """x, parameters, settings and forward GEMM FLOPs of token or channel mixing in mixer-cifar100."""
    config = block_config("mixer-cifar100")
    torch.manual_seed(0)
    layer = MixerLayer(**config)  # nn.Linear/LayerNorm initialisation of the parameters
    norm, mlp = (layer.norm1, layer.mlp_tokens) if op == "token_mixing" else (layer.norm2, layer.mlp_channels)
    patches, dim = config["num_patches"], config["dim"]
    params = (norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
    # Two GEMMs of hidden x in_features per row, 2 FLOPs per multiply-add; the token MLP has
    # B*D rows of length P, the channel MLP B*P rows of length D: 4*B*P*D*hidden either way.
    flops = 4 * BATCH * patches * dim * mlp.fc1.out_features
    return torch.randn(BATCH, patches, dim), params, dict(eps=config["eps"], approximate=config["approximate"]), flops


def gating_case(op: str):
    """The same for spatial gating in gmlp-cifar100; x is fc1's output, (B, P, hidden)."""
    config = block_config("gmlp-cifar100")
    torch.manual_seed(0)
    gate = gMLPLayer(**config).mlp_channels.gate
    patches, half = config["num_patches"], config["hidden"] // 2
    # timm's near-zero init would make the spatial product numerically irrelevant to the checks.
    torch.nn.init.normal_(gate.proj.weight, std=patches**-0.5)
    params = (gate.norm.weight, gate.norm.bias, gate.proj.weight, gate.proj.bias)
    flops = 2 * BATCH * patches * patches * half  # W (P x P) times LN(V) (P x half) per sample
    settings = dict(eps=config["gate_eps"], approximate=config["approximate"])
    return torch.randn(BATCH, patches, 2 * half), params, settings, flops


def fourier_case(op: str):
    """The same for Fourier mixing in fnet-cifar100: x (B, P, D), norm1's parameters."""
    config = block_config("fnet-cifar100")
    torch.manual_seed(0)
    norm = FNetLayer(**config).norm1
    patches = create_model("fnet-cifar100", fused=False, depth=0).num_patches
    points = patches * config["dim"]
    flops = round(BATCH * 2.5 * points * math.log2(points))  # the FFT count the model's roofline uses
    return torch.randn(BATCH, patches, config["dim"]), (norm.weight, norm.bias), dict(eps=config["eps"]), flops


def postnorm_case(op: str):
    """The same for FNet's feed-forward sub-layer in fnet-cifar100: x (B, P, D), norm2 and the MLP."""
    config = block_config("fnet-cifar100")
    torch.manual_seed(0)
    layer = FNetLayer(**config)
    patches = create_model("fnet-cifar100", fused=False, depth=0).num_patches
    mlp = layer.mlp
    params = (layer.norm2.weight, layer.norm2.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
    flops = 4 * BATCH * patches * config["dim"] * config["hidden"]
    settings = dict(eps=config["eps"], approximate=config["approximate"])
    return torch.randn(BATCH, patches, config["dim"]), params, settings, flops


def mlp_case(op: str):
    """The same for the bare MLPs of patchless-cifar10's layers: x (B, 32, 96) rows of the HWC map."""
    with torch.device("meta"):
        model = create_model("patchless-cifar10", fused=False)
    height, width = model.height, model.width
    torch.manual_seed(0)
    layer = PatchlessLayer(height, width)
    mlp = layer.mlp_height if op == "token_mlp" else layer.mlp_width
    params = (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
    # Two square GEMMs of the mixed size n on each of the B * (other size) vectors.
    n, other = (height, width) if op == "token_mlp" else (width, height)
    flops = 4 * BATCH * other * n * n
    return torch.randn(BATCH, height, width), params, dict(approximate="none"), flops


def block_case(op: str):
    """The same for mixer-cifar100's blocks (mixer_blocks): each block's token then channel mixing
    parameters, as many blocks as the preset has (the first block's, repeated)."""
    x, token, settings, flops = mixing_case("token_mixing")
    _, channel, _, channel_flops = mixing_case("channel_mixing")
    depth = get_preset("mixer-cifar100")["depth"]
    return x, (token + channel) * depth, settings, depth * (flops + channel_flops)


def patch_case(op: str):
    """The same for mixer-cifar100's stem: images (B, 3, 64, 64), Conv2d weight (256, 3, 8, 8)."""
    with torch.device("meta"):
        stem = create_model("mixer-cifar100", fused=False).stem
    torch.manual_seed(0)
    proj = torch.nn.Conv2d(stem.in_chans, stem.dim, stem.patch_size, stride=stem.patch_size)
    flops = BATCH * stem.gemm_flops()
    return torch.randn(BATCH, stem.in_chans, *stem.image_size), (proj.weight, proj.bias), {}, flops


def features_case(op: str):
    """The same for mixer-cifar100's pooled features (mixer_features): its stem's images and
    parameters, then its four blocks' (the first block's, repeated); no final norm, as in the preset."""
    images, stem, _, stem_flops = patch_case("patch_embed")
    _, blocks, settings, block_flops = block_case("mixer_blocks")
    return images, (*stem, *blocks), settings, stem_flops + block_flops


CASES = {"token_mixing": mixing_case, "channel_mixing": mixing_case, "spatial_gating": gating_case,
         "fourier_mixing": fourier_case, "token_mlp": mlp_case, "channel_mlp": mlp_case,
         "channel_mixing_postnorm": postnorm_case, "patch_embed": patch_case,
         "mixer_blocks": block_case, "mixer_features": features_case}


class OpBench:
    """Inputs, the three providers and the FLOP count of one op at the benchmark shapes."""

    def __init__(self, op: str):
        self.name, self.op = op, OPS[op]
        x, params, kwargs, self.forward_flops = CASES[op](op)
        self.inputs = tuple(t.detach().clone().requires_grad_() for t in (x, *params))
        grad_out = torch.randn(self.op.out_shape(x, params))
        self.grad_out = {torch.float32: grad_out, torch.bfloat16: grad_out.bfloat16()}
        fused_op, reference_op = getattr(mixerkern.functional, op), getattr(reference, op)

        def eager(*inputs):
            return reference_op(*inputs, **kwargs)

        def fused(*inputs):
            return fused_op(*inputs, **kwargs)

        self.providers = dict(eager=eager, compile=torch.compile(eager), fused=fused)
        self.verdicts: dict[tuple, str | None] = {}

    def run(self, provider: str, pass_: str, dtype: str) -> tuple[torch.Tensor, ...]:
        """The output, then (fwd+bwd) the gradients of every input."""
        with precision(dtype), torch.set_grad_enabled(pass_ != "infer"):
            out = self.providers[provider](*self.inputs)
        if pass_ != "fwd+bwd":
            return (out,)
        return (out, *torch.autograd.grad(out, self.inputs, self.grad_out[out.dtype]))

    def problem(self, provider: str, pass_: str, dtype: str) -> str | None:
        """None when the provider agrees with eager (checked once per config); why it is no baseline
        where it is an UnusableBaseline; raises where it is wrong."""
        if provider == "eager":
            return None
        return baseline_verdict(self.verdicts, (provider, pass_, dtype), lambda: self._check(provider, pass_, dtype))

    def _check(self, provider: str, pass_: str, dtype: str) -> None:
        what = f"{self.name} {pass_} {dtype} {provider}"
        labels = ("x", *self.op.param_names)  # stacked-block ops name the first block's only
        names = ("output", *(f"grad {labels[i] if i < len(labels) else f'input {i}'}" for i in range(len(self.inputs))))
        for name, actual, expected in zip(names, self.run(provider, pass_, dtype),
                                          self.run("eager", pass_, dtype)):
            assert_close(actual, expected, dtype, f"{what}: {name}", baseline=provider == "compile")


@functools.cache
def op_bench(op: str) -> OpBench:
    return OpBench(op)


def run_op_benchmark(benchmark, op: str, pass_: str, dtype: str, provider: str) -> None:
    bench = op_bench(op)
    benchmark.group = f"{op} {pass_} {dtype} threads={THREADS}"
    torch.set_num_threads(THREADS)
    if provider == "compile":
        prepare_compiled(THREADS)
    if reason := bench.problem(provider, pass_, dtype):
        pytest.skip(reason)
    baselines = {}
    if provider == "fused":  # eager and compile interleaved with it, see run_pedantic
        prepare_compiled(THREADS)
        baselines = {p: functools.partial(bench.run, p, pass_, dtype) for p in PROVIDERS
                     if p != provider and not bench.problem(p, pass_, dtype)}
        baselines["matmul"] = peak_probe()
    _, side_by_side = run_pedantic(benchmark, lambda: bench.run(provider, pass_, dtype), rounds=ROUNDS,
                                   warmup_rounds=WARMUP_ROUNDS, side_by_side=baselines)
    flops = bench.forward_flops * (3 if pass_ == "fwd+bwd" else 1)  # backward: 2 GEMMs per forward GEMM
    record(benchmark, model=op, mode=pass_, dtype=dtype, threads=THREADS, provider=provider,
           batch=BATCH, flops=flops, side_by_side=side_by_side)
