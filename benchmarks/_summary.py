"""The end-of-session summary: one table row per measured config, with speedups against the eager and
compile rows of the same (model, mode, dtype, threads), printed and written as Markdown and JSON."""
from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import torch

from . import _common

COLUMNS = (  # (header, row key, format)
    ("model", "model", "{}"), ("mode", "mode", "{}"), ("dtype", "dtype", "{}"),
    ("threads", "threads", "{}"), ("provider", "label", "{}"), ("ms/batch", "ms_per_batch", "{:.1f}"),
    ("img/s/core", "img_per_s_per_core", "{:.0f}"), ("GFLOP/s", "gflops_per_s", "{:.1f}"),
    ("roofline %", "roofline_pct", "{:.1f}"), ("peak GFLOP/s", "peak_gflops_per_s", "{:.1f}"), ("vs eager", "speedup_vs_eager", "{:.2f}x"),
    ("vs compile", "speedup_vs_compile", "{:.2f}x"), ("side by side: eager / compile ms", "side_by_side", "{}"),
    ("saved MiB", "saved_mib", "{:.1f}"),
    ("step peak MiB", "step_peak_mib", "{:.1f}"),
)


def add_speedups(rows: list[dict]) -> None:
    """speedup_vs_X = time of provider X / time of this row, for the same model/mode/dtype/threads;
    X's time is the one measured side by side with this row (fused rows) where there is one, else
    X's own row."""
    def key(row):
        return row["model"], row["mode"], row["dtype"], row["threads"]

    times = {(*key(row), row["provider"]): row["ms_per_batch"] for row in rows}
    for row in rows:
        for baseline in ("eager", "compile", "fused_fp32"):  # fused_fp32: bf16 fused rows only, side by side
            other = row.get(f"{baseline}_ms_side_by_side", times.get((*key(row), baseline)))
            if other is not None:
                row[f"speedup_vs_{baseline}"] = other / row["ms_per_batch"]
                row["extra_info"][f"speedup_vs_{baseline}"] = row[f"speedup_vs_{baseline}"]


def sort_key(row: dict) -> tuple:
    """Model-level rows first, then ops; within each, by mode, dtype, threads and provider."""
    order = {name: i for i, name in enumerate(("inference", "train", "infer", "fwd", "fwd+bwd", *_common.DTYPES,
                                                *_common.PROVIDERS))}
    models = {name: i for i, name in enumerate(_common.MODELS)}
    return (models.get(row["model"], len(models)), row["model"], order[row["mode"]], order[row["dtype"]],
            row["threads"], order[row["provider"]])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(rows: list[dict]) -> dict:
    rates = {f"{row['threads']} thread(s)": dict(fp32=round(row["matmul_fp32_gflops_per_s"], 1),
                                                bf16=round(row["matmul_bf16_gflops_per_s"], 1))
             for row in sorted(rows, key=lambda row: row["threads"])}
    return dict(date=datetime.date.today().isoformat(), cpu=cpu_model(), cores=_common.ALL_CORES,
                torch=torch.__version__, fused_backend=_common.fused_backend(), batch=_common.BATCH,
                matmul_1024_gflops_per_s=rates)


def markdown(rows: list[dict], failures: list[str], info: dict) -> str:
    lines = [f"{info['date']} | {info['cpu']} | {info['cores']} cores | torch {info['torch']} | "
             f"fused backend: {info['fused_backend']} | batch {info['batch']}",
             "", "1024^3 matmul GFLOP/s (roofline peak; bf16 rows use max(fp32, bf16)): "
             + "; ".join(f"{t}: fp32 {r['fp32']}, bf16 {r['bf16']}"
                         for t, r in info["matmul_1024_gflops_per_s"].items()), ""]
    if "reference-fallback" in info["fused_backend"]:
        lines += ["**WARNING: fused ops ran on the reference fallback, NOT compiled kernels: "
                  "`fused[fallback]` rows do not measure the kernels.**", ""]
    lines += ["| " + " | ".join(name for name, _, _ in COLUMNS) + " |",
              "|" + "|".join("---" if i < 5 else "---:" for i in range(len(COLUMNS))) + "|"]
    for row in sorted(rows, key=sort_key):
        if "eager_ms_side_by_side" in row:
            times = (row.get(f"{p}_ms_side_by_side") for p in ("eager", "compile"))
            row = dict(row, side_by_side=" / ".join("-" if t is None else f"{t:.1f}" for t in times))
        cells = [fmt.format(row[key]) if row.get(key) is not None else "" for _, key, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "img/s/core = batch / fastest round's time / threads. Fused rows' speedups are side by side: "
              "before each timed fused round, one eager and one compile call run (timed apart), and the "
              "speedup is the ratio of the fastest calls. So does one fp32 1024^3 matmul, whose fastest "
              "call is the peak of the fused row's roofline % (other rows: the session's peak above). GFLOP/s counts GEMM FLOPs only (train: 3x "
              "forward). saved MiB: tensors saved for backward (saved_tensors_hooks, excl. params and "
              "input); step peak MiB: peak RSS growth over 2 training steps in a fresh process (see "
              "benchmarks/_memory.py)."]
    lines += precision_lines(rows)
    lines += pipeline_lines(rows)
    if failures:
        lines += ["", f"**{len(failures)} config(s) FAILED and have no row:**", ""]
        lines += [f"- {failure}" for failure in failures]
    if _common.SKIPPED:
        lines += ["", f"{len(_common.SKIPPED)} config(s) skipped, no row (a skipped baseline is left out of "
                  "the fused rows' side-by-side):", ""]
        lines += [f"- {reason}" for reason in _common.SKIPPED]
    return "\n".join(lines)


def precision_lines(rows: list[dict]) -> list[str]:
    """bf16 fused inference against fp32 fused, the fp32 call timed side by side with each bf16 round."""
    pairs = [f"{r['model']} {r['threads']}t {r['speedup_vs_fused_fp32']:.2f}x ({r['fused_fp32_ms_side_by_side']:.1f} / "
             f"{r['ms_per_batch']:.1f} ms)" for r in sorted(rows, key=sort_key) if "speedup_vs_fused_fp32" in r]
    return ["", "bf16 fused inference vs fp32 fused, side by side (fp32 / bf16 ms): " + "; ".join(pairs) + "."] if pairs else []


def pipeline_lines(rows: list[dict]) -> list[str]:
    """The data pipeline's rate against the fastest 1-thread fused training step of this run."""
    if not _common.PIPELINE:
        return []
    rates = ", ".join(f"{path} {rate:.0f}" for path, rate in _common.PIPELINE.items())
    lines = ["", f"Data pipeline (uint8 3x32x32 -> 64x64, 1 thread), img/s/core: {rates}."]
    train_rows = [r for r in rows if r["mode"] == "train" and r["provider"] == "fused" and r["threads"] == 1]
    if train_rows and "train" in _common.PIPELINE:
        fastest = max(train_rows, key=lambda r: r["img_per_s_per_core"])
        lines[-1] += (f" That is {_common.PIPELINE['train'] / fastest['img_per_s_per_core']:.1f}x the fastest fused "
                      f"training step ({fastest['model']} {fastest['dtype']}, {fastest['img_per_s_per_core']:.0f} "
                      "img/s/core); target >= 5x.")
    return lines


def write(rows: list[dict], failures: list[str], directory: Path) -> tuple[str, Path]:
    """Writes summary.md and summary.json under ``directory``; returns the text and the .md path."""
    info = header(rows)
    text = markdown(rows, failures, info)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.md").write_text(text + "\n")
    plain_rows = [{k: v for k, v in row.items() if k != "extra_info"} for row in rows]
    summary = dict(info, rows=plain_rows, failures=failures, skipped=_common.SKIPPED)
    (directory / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return text, directory / "summary.md"
