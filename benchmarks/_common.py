"""Helpers shared by every benchmark module: the configuration grid, providers, precision and thread
contexts, the matmul "peak" that the roofline is measured against, and recording of one result row.

Numbers are reported, never asserted: a benchmark fails only when a provider computes a wrong result
(see ``assert_close``), so that a broken kernel cannot produce a fast-looking number.
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings

import torch
import torch.nn.functional as F

import mixerkern

# The model-level benchmarks, one test_<family>.py each, in summary order.
MODELS = ("mixer-cifar100", "gmlp-cifar100", "fnet-cifar100")
BATCH = int(os.environ.get("MIXERKERN_BENCH_BATCH", "128"))
ALL_CORES = os.cpu_count() or 1
THREADS = sorted({1, ALL_CORES})
DTYPES = ("fp32", "bf16")
PROVIDERS = ("eager", "compile", "fused")  # plain reference, torch.compile(reference), fused ops

# Relative L2 error allowed between a provider and eager on the benchmark input: a sanity bound that
# a broken kernel (error of order 1) cannot pass. bf16 keeps 8 mantissa bits and the providers round
# at different points: outputs and most gradients differ by ~5e-3, but LayerNorm weight/bias
# gradients, sums over B*P = 8192 rows, by ~8e-2 when summed in bf16 (as the reference fallback does).
REL_TOL = {"fp32": 1e-4, "bf16": 0.15}

ROWS: list[dict] = []  # one per measured config, in run order; conftest turns them into the summary
FAILURES: list[str] = []  # "test id: error" of configs that failed, so the summary cannot hide them
SKIPPED: list[str] = []  # "test id: reason" of configs skipped, e.g. an UnusableBaseline
PIPELINE: dict[str, float] = {}  # data-pipeline img/s/core per path ("train", "eval"), see test_data_pipeline


def precision(dtype: str):
    """fp32 runs as is; bf16 runs under CPU autocast, as a bf16 training/inference script would."""
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fused_backend() -> str:
    """'cpp-<isa>' when the fused ops run compiled kernels, 'reference-fallback' when they do not."""
    info = mixerkern.backend_info()
    backends = {info[op]["cpu"] for op in mixerkern.ops.OPS}
    return backends.pop() if len(backends) == 1 else "/".join(sorted(backends))


def fused_is_fallback() -> bool:
    return "reference-fallback" in fused_backend()


@functools.cache
def _warn_fallback() -> None:
    reason = mixerkern.backend_info()["cpu_load_error"]
    warnings.warn(f"mixerkern benchmarks: the fused ops run on the REFERENCE FALLBACK ({reason}), not "
                  "on compiled kernels; 'fused' rows are marked [fallback] and say nothing about the "
                  "kernels' speed.", RuntimeWarning, stacklevel=2)


def provider_label(provider: str) -> str:
    """The name a row is reported under; fused rows on the fallback are marked, never passed off."""
    if provider == "fused" and fused_is_fallback():
        _warn_fallback()
        return "fused[fallback]"
    return provider


_compiled_at_threads: int | None = None  # the thread count of the graphs in dynamo's cache


def prepare_compiled(threads: int) -> None:
    """Call before running torch.compile'd code with ``threads`` threads.

    Inductor's CPU kernels hard-code torch.get_num_threads() at compile time, but dynamo does not
    guard on it: a model compiled at 1 thread would silently be reused, single-threaded, at 2.
    So dynamo's cache is cleared whenever the thread count changes, and the compiled models
    recompile on their next (warm-up) call; inductor's on-disk cache is keyed by thread count.
    Tests run grouped by thread count, so this happens once per count. (Inductor's
    ``cpp.dynamic_threads`` would avoid the recompiles, but its inference ran 5-35% slower at
    2 threads in an A/B on this machine.)
    """
    global _compiled_at_threads
    if _compiled_at_threads not in (None, threads):
        torch._dynamo.reset()
    _compiled_at_threads = threads


@contextlib.contextmanager
def num_threads(threads: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


PEAK_N = 1024  # the roofline's matmul size


@functools.cache
def _peak_operands(n: int = PEAK_N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)


def peak_probe():
    """One fp32 PEAK_N^3 matmul, to run side by side with a fused config (provider name "matmul"):
    its fastest call then gives that row's roofline peak, measured in the same phases of this shared
    VM as the row itself rather than once per session."""
    a, b = _peak_operands()
    return lambda: a @ b


@functools.cache
def matmul_gflops(threads: int, dtype: str, n: int = PEAK_N, reps: int = 5) -> float:
    """Best-of-``reps`` rate of an n^3 torch matmul (2 n^3 FLOPs): what this CPU + torch can reach."""
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(torch_dtype) for _ in range(2))
    with num_threads(threads):
        a @ b  # warm-up: thread pool, oneDNN/BLAS dispatch
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def peak_gflops(threads: int, dtype: str) -> float:
    """Roofline denominator. For bf16, the faster of the fp32 and bf16 matmul: without AVX512-BF16
    torch emulates bf16 GEMMs (much slower than fp32), and a bf16 kernel is free to compute in fp32,
    so dividing by the bf16 rate alone would overstate efficiency."""
    fp32 = matmul_gflops(threads, "fp32")
    return fp32 if dtype == "fp32" else max(fp32, matmul_gflops(threads, "bf16"))


def run_pedantic(benchmark, fn, *, rounds: int, warmup_rounds: int, side_by_side: dict | None = None):
    """Times ``fn``; warm-up calls (which absorb torch.compile) are not timed. Returns its result and
    the side-by-side times: each provider of ``side_by_side`` ({name: fn}) runs once right before
    every round of ``fn`` (pytest-benchmark's untimed setup, timed here), and its fastest call is
    returned in seconds. The rows of one config otherwise run minutes apart, and on a shared VM a
    burst of noise in between flips their ratio; interleaved, both sides see the same phases.

    The "matmul" probe (peak_probe) runs first, then one untimed call of ``fn``: the probe's 12 MB
    working set leaves the caches cold, and the call right after it ran ~2x slower at ~1 ms ops
    (channel_mlp bf16: 1.42 vs 0.73 ms, while the reference right after the fused op took 0.95 vs
    0.68). So every timed call follows a call of its own kind of work, none follows the probe."""
    others = dict(side_by_side or {})
    probe = others.pop("matmul", None)
    times: dict[str, list[float]] = {name: [] for name in [*others, *(["matmul"] if probe else [])]}
    setups = 0

    def timed(name, call):
        start = time.perf_counter()
        call()
        if setups > warmup_rounds:
            times[name].append(time.perf_counter() - start)

    def setup():
        nonlocal setups
        setups += 1
        if probe:
            timed("matmul", probe)
            fn()
        for name, other in others.items():
            timed(name, other)

    result = benchmark.pedantic(fn, setup=setup if times else None, rounds=rounds, warmup_rounds=warmup_rounds,
                                iterations=1)
    return result, {name: min(t) for name, t in times.items() if t}


def record(benchmark, *, model: str, mode: str, dtype: str, threads: int, provider: str,
           batch: int, flops: float, side_by_side: dict | None = None, **extra) -> dict | None:
    """Derives the reported metrics from the timing and stores them in ``benchmark.extra_info``.

    ``flops`` is the useful GEMM work of one call (a training step counts 3x the forward: the forward
    GEMM plus one GEMM each for the input and weight gradients). ``side_by_side``: the seconds of the
    providers interleaved with this one (see run_pedantic), which its speedups are then taken from.
    """
    metadata = getattr(benchmark, "stats", None)
    if not metadata:  # --benchmark-disable: the function ran once, untimed
        return None
    # The fastest round, like the matmul peak it is divided by (best of its reps): on this shared
    # VM, noise only ever adds time, and it lands on whichever provider happens to be running.
    seconds = metadata.stats.min
    gflops = flops / seconds / 1e9
    side_by_side = dict(side_by_side or {})
    probe = side_by_side.pop("matmul", None)
    peak = peak_gflops(threads, dtype)
    if probe is not None:  # the matmul timed side by side with this row (see peak_probe)
        fp32 = 2 * PEAK_N**3 / probe / 1e9
        peak = fp32 if dtype == "fp32" else max(fp32, matmul_gflops(threads, "bf16"))
    row = dict(model=model, mode=mode, dtype=dtype, threads=threads, provider=provider,
               label=provider_label(provider), fused_backend=fused_backend(), batch=batch,
               ms_per_batch=seconds * 1e3, img_per_s_per_core=batch / seconds / threads,
               gflops_per_s=gflops,
               roofline_pct=100 * gflops / peak, peak_gflops_per_s=peak,
               matmul_fp32_gflops_per_s=matmul_gflops(threads, "fp32"),
               matmul_bf16_gflops_per_s=matmul_gflops(threads, "bf16"),
               **{f"{name}_ms_side_by_side": t * 1e3 for name, t in side_by_side.items()}, **extra)
    benchmark.extra_info.update(row)
    row["extra_info"] = benchmark.extra_info  # conftest adds the speedups here before results are saved
    ROWS.append(row)
    return row


def baseline_verdict(verdicts: dict, key: tuple, check) -> str | None:
    """Runs ``check()`` once per key and keeps its verdict: None when the provider agreed with eager,
    the reason when it is an UnusableBaseline. A wrong result raises, on every call."""
    if key not in verdicts:
        try:
            check()
            verdicts[key] = None
        except UnusableBaseline as error:
            verdicts[key] = str(error)
    return verdicts[key]


def make_batch(model, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images of the model's input shape and random class labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, model.stem.in_chans, *model.stem.image_size, generator=gen)
    return images, torch.randint(0, model.head.out_features, (batch,), generator=gen)


def infer(model, forward, images, dtype: str) -> torch.Tensor:
    """Inference: eval mode (no dropout), no autograd. ``forward`` is ``model`` or its compiled form."""
    model.eval()
    with torch.no_grad(), precision(dtype):
        return forward(images)


def train_step(model, forward, optimizer, images, labels, dtype: str) -> torch.Tensor:
    """One training step; autocast covers forward and loss only, as torch's AMP recipe prescribes."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with precision(dtype):
        loss = F.cross_entropy(forward(images), labels)
    loss.backward()
    optimizer.step()
    return loss.detach()


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


class UnusableBaseline(Exception):
    """torch.compile(reference) computed non-finite values where eager's are finite: a torch bug, not a
    kernel of ours. torch 2.13's inductor does it in bf16 on a Xeon of model 207 (all-NaN output from
    its AVX-512 code for a bf16 transpose-and-add; its AVX2 and scalar code are right). Timing that
    wrong computation would make a meaningless baseline: its rows are skipped, and fused rows leave
    it out of their side-by-side."""


def assert_close(actual, expected, dtype: str, what: str, eager_error: float = 0.0, baseline: bool = False) -> None:
    """Sanity check (not a unit test): relative L2 error within the precision's tolerance, or within
    twice ``eager_error`` (the eager reference's own error at this precision) where that is larger.
    ``baseline``: ``actual`` comes from torch.compile, which may be an UnusableBaseline."""
    if not torch.isfinite(actual).all():
        if baseline and torch.isfinite(expected).all():
            raise UnusableBaseline(f"{what}: torch.compile computed non-finite values where eager's are finite "
                                   "(a torch bug on this machine, see benchmarks/_common.py)")
        raise AssertionError(f"{what}: non-finite values")
    err, tol = rel_error(actual, expected), max(REL_TOL[dtype], 2 * eager_error)
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.2e} vs the reference"
