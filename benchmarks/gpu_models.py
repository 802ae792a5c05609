"""GPU benchmark (issue #6): Mixer-B/16, gMLP-S/16 and FNet-B/16 at 224 px, batch 256, bf16 autocast,
inference and one AdamW training step, for eager, torch.compile and the fused (Triton) ops, next
to the bf16 matmul peak measured in the same run. Needs a CUDA device; prints a markdown table and
writes the rows as JSON.

    python benchmarks/gpu_models.py --out gpu_results.json

Before timing, each provider's inference output is checked against eager's (relative L2 error at
most 0.05 in bf16), so that a broken kernel cannot post a fast number.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch
import torch.nn.functional as F

from mixerkern.models import create_model, flops_per_image

PROVIDERS = ("eager", "compile", "fused")


def seconds_per_call(fn, reps: int, warmup: int) -> float:
    """Median over ``reps`` calls, timed with CUDA events after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def bf16_matmul_peak(n: int = 8192) -> float:
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, reps=20, warmup=5)


def steps(model, forward, images, labels):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def infer():
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return forward(images)

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    return {"inference": infer, "train": train}


def bench_model(name: str, batch: int, reps: int, peak: float) -> list[dict]:
    torch.manual_seed(0)
    reference = create_model(name, fused=False).cuda()
    images = torch.randn(batch, reference.stem.in_chans, *reference.stem.image_size, device="cuda")
    labels = torch.randint(0, reference.head.out_features, (batch,), device="cuda")
    flops = flops_per_image(reference) * batch
    rows, expected = [], None
    for provider in PROVIDERS:
        model = create_model(name, fused=provider == "fused").cuda()
        model.load_state_dict(copy.deepcopy(reference.state_dict()))
        forward = torch.compile(model) if provider == "compile" else model
        calls = steps(model, forward, images, labels)
        out = calls["inference"]().float()
        expected = out if expected is None else expected
        err = ((out - expected).norm() / expected.norm()).item()
        assert err <= 0.05, f"{name} {provider}: output differs from eager by {err:.3f}"
        for mode, fn in calls.items():
            seconds = seconds_per_call(fn, reps, warmup=3)
            useful = flops * (3 if mode == "train" else 1)
            rows.append(dict(model=name, mode=mode, provider=provider, batch=batch, img_per_s=batch / seconds,
                             tflops=useful / seconds / 1e12, peak_pct=100 * useful / seconds / peak))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mixer-b16", "gmlp-s16", "fnet-b16"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_models.py needs a CUDA device")
    peak = bf16_matmul_peak()
    print(f"device: {torch.cuda.get_device_name()}; bf16 matmul peak {peak / 1e12:.0f} TFLOP/s (8192^3)")
    rows = [row for name in args.models for row in bench_model(name, args.batch, args.reps, peak)]
    compiled = {(r["model"], r["mode"]): r["img_per_s"] for r in rows if r["provider"] == "compile"}
    print("| model | mode | provider | img/s | TFLOP/s | % bf16 peak | vs compile |\n|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        r["vs_compile"] = r["img_per_s"] / compiled[r["model"], r["mode"]]
        print(f"| {r['model']} | {r['mode']} | {r['provider']} | {r['img_per_s']:.0f} | {r['tflops']:.1f} | "
              f"{r['peak_pct']:.1f} | {r['vs_compile']:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), peak_flops=peak, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
