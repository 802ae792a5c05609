"""``python -m mixerkern.analysis``: CKA heatmaps between the sub-blocks of a trained model, and
activation maps of one test image.

  cka          CKA between every pair of sub-block outputs (L<layer>B<sub-block>) on test images;
               writes a heatmap PNG, and the matrix as JSON and CSV beside it.
  activations  a test image beside one layer's activations on the patch grid.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ..data import DatasetError, ImageArrays, load_dataset
from ..data.pipeline import Preprocess
from ..models import MlpClassifier, load
from ..models.checkpoint import atomic_replace, read_metadata, resolve
from ..ops import OPS, backend_info
from .capture import block_stages, capture, capture_modules, module_names, patch_map, stage_labels
from .cka import KINDS, MinibatchCKA


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mixerkern.analysis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{cka,activations}")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                        help="training run directory (its best, else last, .safetensors) or a checkpoint file")
        sp.add_argument("--data-dir", default=None,
                        help="folder holding the dataset files (default: the run's data_dir, then the cache)")
        sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: %(default)s")
        sp.add_argument("--out", default=None, metavar="PNG", help="output image (default: in the run directory)")

    cka = sub.add_parser("cka", help="CKA heatmap between all sub-block outputs")
    common(cka)
    cka.set_defaults(subparser=cka)
    cka.add_argument("--kind", default="linear", choices=KINDS,
                     help="linear CKA, or kernel: RBF with sigma = threshold x median pairwise distance "
                          "(default: %(default)s)")
    cka.add_argument("--samples", type=_positive_int, default=1000, help="the first N test images (default: %(default)s)")
    cka.add_argument("--batch-size", type=_positive_int, default=250,
                     help="minibatch of the forward passes and of the HSIC accumulation (Nguyen et al. 2021); "
                          "batches are balanced to at most this size (default: %(default)s)")
    cka.add_argument("--unbiased", action="store_true",
                     help="unbiased HSIC (Song et al. 2012) in every minibatch: what the estimate converges to "
                          "does not depend on --batch-size; the default biased one equals the full-sample CKA "
                          "only if --batch-size >= --samples")
    cka.add_argument("--threshold", type=_positive_float, default=1.0,
                     help="--kind kernel: sigma as a multiple of the median distance (default: %(default)s)")

    act = sub.add_parser("activations", help="a test image beside a layer's activation map")
    common(act)
    act.set_defaults(subparser=act)
    act.add_argument("--index", type=int, required=True, metavar="K", help="test image index")
    act.add_argument("--layer", required=True, metavar="NAME",
                     help="stage label (L2B1) or module name (blocks.2.mlp_tokens; run on reference blocks, "
                          "whose submodules all run as modules)")
    act.add_argument("--channels", type=int, nargs="*", default=[], metavar="C",
                     help="channels to show besides the mean and L2 norm over channels")
    return p


@dataclass
class Run:
    path: Path              # the checkpoint file
    model: MlpClassifier
    dataset: str
    preprocess: Preprocess
    test: ImageArrays
    device: torch.device


def _fused_on(device: str) -> bool:
    """Whether every fused op has kernels on ``device`` (else the reference blocks run there)."""
    info = backend_info()
    return device == "cpu" or all(device in info[op] for op in OPS)


def _load_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Run:
    try:
        path = resolve(args.checkpoint)
        meta = read_metadata(path)
    except (OSError, ValueError, SafetensorError) as err:
        parser.error(f"--checkpoint: {err}")
    run_json = path.parent / "run.json"
    try:
        summary = json.loads(run_json.read_text()) if run_json.is_file() else {}
    except (OSError, ValueError) as err:
        parser.error(f"--checkpoint: cannot read {run_json}: {err}")
    dataset, pre = meta.get("dataset", summary.get("dataset")), meta.get("preprocess", summary.get("preprocess"))
    if not dataset or not isinstance(pre, dict) or not {"mean", "std", "image_size"} <= set(pre):
        parser.error(f"--checkpoint {path}: its metadata (or the run.json beside it) names no dataset and "
                     f"preprocess {{mean, std, image_size}}; was it written by mixerkern.train?")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    data_dir = args.data_dir or summary.get("run", {}).get("data_dir")
    try:
        test = load_dataset(dataset, "test", data_dir, download=False)
    except (DatasetError, ValueError) as err:
        parser.error(f"cannot read the {dataset} test split (--data-dir {data_dir}): {err}")
    model = load(path, fused=_fused_on(args.device), map_location=args.device)
    return Run(path, model, dataset, Preprocess(list(pre["mean"]), list(pre["std"]), int(pre["image_size"])),
               test, torch.device(args.device))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def run_cka(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    run = _load_run(parser, args)
    n = args.samples
    if n > len(run.test):
        parser.error(f"--samples {n}: the {run.dataset} test split has only {len(run.test)} images")
    chunks = torch.arange(n).tensor_split(math.ceil(n / args.batch_size))
    need = 4 if args.unbiased else 2
    if len(chunks[-1]) < need:
        parser.error(f"--samples {n} / --batch-size {args.batch_size}: every minibatch needs at least {need} "
                     f"images for this estimator, the smallest has {len(chunks[-1])}; raise --batch-size")
    acc = MinibatchCKA(args.kind, unbiased=args.unbiased, threshold=args.threshold)
    for idx in chunks:
        images = run.preprocess(run.test.images[idx].to(run.device))
        try:
            acc.update(capture(run.model, images))
        except ValueError as err:  # e.g. a kernel bandwidth that the median heuristic cannot set
            parser.error(f"--kind {args.kind}: {err}")
    matrix, labels = acc.compute(), acc.row_labels
    name = f"cka-{args.kind}{'-unbiased' if args.unbiased else ''}.png"
    out = Path(args.out) if args.out else run.path.parent / name
    stages = {f"L{i}B{j}": f"blocks.{i} {name}" for i, block in enumerate(run.model.blocks)
              for j, name in enumerate(block_stages(block))}
    result = {"checkpoint": str(run.path), "model": run.model.config.get("name"), "dataset": run.dataset,
              "kind": args.kind, "unbiased": args.unbiased,
              "threshold": args.threshold if args.kind == "kernel" else None,  # sigma: per minibatch and layer
              "samples": n, "batch_size": args.batch_size, "batches": len(chunks), "labels": labels, "stages": stages,
              "matrix": [[None if math.isnan(v) else v for v in row] for row in matrix.tolist()]}
    write_cka(out, result, matrix)
    return out, result


def write_cka(out: Path, result: dict[str, Any], matrix: torch.Tensor) -> None:
    """The heatmap at ``out``, the result at out.json and the bare matrix at out.csv."""
    labels = result["labels"]
    plt = _pyplot()
    size = max(4.0, 1.5 + 0.45 * len(labels))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix.numpy(), vmin=0.0, vmax=1.0, cmap="magma", origin="lower")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= 16:
        for i, row in enumerate(matrix.tolist()):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v > 0.6 else "white")
    estimator = f"{result['kind']} CKA{', unbiased' if result['unbiased'] else ''}"
    ax.set_title(f"{result['model']}: {estimator}\n{result['samples']} {result['dataset']} test images")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    atomic_replace(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(result, indent=1)))

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", *labels])
            w.writerows([label, *row] for label, row in zip(labels, matrix.tolist()))

    atomic_replace(out.with_suffix(".csv"), write_csv)


def run_activations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    run = _load_run(parser, args)
    k, count = args.index, len(run.test)
    if not 0 <= k < count:
        parser.error(f"--index {k}: out of range, the {run.dataset} test split has {count} images "
                     f"(0 .. {count - 1})")
    labels, modules = stage_labels(run.model), module_names(run.model)
    images = run.preprocess(run.test.images[k:k + 1].to(run.device))
    if args.layer in labels:
        activation = capture(run.model, images, [args.layer])[args.layer][0]
    elif args.layer in modules:
        # Fused blocks run their submodules' weights inside custom ops, where hooks see nothing.
        reference = load(run.path, fused=False, map_location=run.device)
        try:
            activation = capture_modules(reference, images, [args.layer])[args.layer][0]
        except ValueError as err:
            parser.error(f"--layer {args.layer}: {err}")
    else:
        parser.error(f"--layer {args.layer!r}: unknown; valid stage labels: {', '.join(labels)}; "
                     f"valid module names: {', '.join(modules)}")
    try:
        maps = patch_map(activation.float().cpu(), run.model.stem.grid)
    except ValueError as err:
        parser.error(f"--layer {args.layer}: {err}")
    bad = [c for c in args.channels if not 0 <= c < maps.shape[0]]
    if bad:
        parser.error(f"--channels {bad}: out of range, {args.layer} has {maps.shape[0]} channels")
    out = Path(args.out) if args.out else run.path.parent / f"activations-{args.layer}-{k}.png"
    plot_activations(out, run, k, args.layer, maps, args.channels)
    return out


def plot_activations(out: Path, run: Run, k: int, layer: str, maps: torch.Tensor, channels: list[int]) -> None:
    plt = _pyplot()
    panels = [("mean over channels", maps.mean(0)), ("L2 norm over channels", maps.norm(dim=0))]
    panels += [(f"channel {c}", maps[c]) for c in channels]
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(3.6 * (1 + len(panels)), 3.6), squeeze=False)
    image = run.test.images[k].cpu().numpy()
    label = run.test.labels[k].item()
    name = run.test.class_names[label] if label < len(run.test.class_names) else str(label)
    axes[0, 0].imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
                      cmap="gray" if image.shape[0] == 1 else None)
    axes[0, 0].set_title(f"{run.dataset} test image {k} (class {name})")
    grid = run.model.stem.grid
    for ax, (title, values) in zip(axes[0, 1:], panels):
        im = ax.imshow(values.numpy(), cmap="viridis")
        ax.set_title(f"{layer}: {title}\n({grid[0]}x{grid[1]} patches)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "cka":
        out, result = run_cka(args.subparser, args)
        print(f"wrote {out} (+ .json, .csv): {len(result['labels'])} stages, {result['samples']} images")
    else:
        print(f"wrote {run_activations(args.subparser, args)}")
    return 0
