"""``python -m mixerkern.train`` / ``mixerkern-train``: the seed's CIFAR-100 experiment and its
relatives (CIFAR-10, MNIST) with any create_model preset. Run under ``torchrun`` for DDP."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..data import DATASETS, DatasetError
from ..models import create_model, list_models
from .loop import DEFAULT_LR, RESUME_FILE, NonFiniteLoss, RunConfig, RunError, run


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _at_least(low, kind):
    def parse(text: str):
        value = kind(text)
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value
    return parse


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**31), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mixerkern.train", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Datasets are read from --data-dir (the official archive or its extracted folder), else from "
               "the cache ($MIXERKERN_DATA or ~/.cache/mixerkern/data), else downloaded. Offline: put "
               "cifar-100-python.tar.gz / cifar-10-python.tar.gz / the four MNIST .gz files in --data-dir.")
    p.add_argument("--model", required=True, choices=list_models(), help="create_model preset")
    p.add_argument("--dataset", default="cifar100", choices=sorted(DATASETS))
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download a missing dataset from its official URL")
    p.add_argument("--epochs", type=_positive(int), default=50)
    p.add_argument("--batch-size", type=_positive(int), default=128, help="global batch (split across ranks)")
    p.add_argument("--lr", type=_positive(float), default=None,
                   help="learning rate (default per family: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--weight-decay", type=_at_least(0.0, float), default=1e-4)
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="fused mixerkern blocks (--no-fused: the plain-PyTorch reference blocks)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips in training (default: on, except for MNIST, whose digits "
                        "are not mirror-symmetric)")
    p.add_argument("--zoom", action=argparse.BooleanOptionalAction, default=True,
                   help="random zoom (+-20 %%) in training")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--threads", type=_positive(int), default=None, help="torch intra-op threads")
    p.add_argument("--seed", type=_seed, default=42, help="0 .. 2**31 - 1")
    p.add_argument("--limit", type=_positive(int), default=None, help="use only the first N train and test images")
    p.add_argument("--out", default=None, help="run directory (default runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", help=f"continue the run in --out from its {RESUME_FILE}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
                   help="create_model override, e.g. --override depth=2 (repeatable; VALUE is JSON or text)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p


def parse_config(argv: list[str] | None = None) -> RunConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out or f"runs/{args.model}-{args.dataset}")
    overrides = dict(args.override)
    for fixed in ("num_classes", "in_chans"):
        if fixed in overrides:
            parser.error(f"--override {fixed}=...: it is set from the dataset")
    try:  # build it on the meta device (no memory, no time): bad overrides fail here, not after loading data
        with torch.device("meta"):
            create_model(args.model, fused=False, **overrides)
    except (TypeError, ValueError) as err:
        parser.error(f"--override: {err}")
    cfg = RunConfig(model=args.model, dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                    epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                    fused=args.fused, bf16=args.bf16, threads=args.threads, seed=args.seed, limit=args.limit,
                    out=str(out), resume=args.resume, device=args.device, progress=not args.quiet, flip=args.flip,
                    zoom=args.zoom, overrides=overrides)
    if args.resume:
        if not (out / RESUME_FILE).is_file():
            parser.error(f"--resume: no {RESUME_FILE} in {out} (give the --out of the run to continue)")
        saved = json.loads((out / "run.json").read_text()).get("identity", {})
        changed = {k: (saved.get(k), v) for k, v in cfg.identity().items() if saved.get(k) != v}
        if changed:
            parser.error("--resume: these settings differ from the run being continued (saved vs given): "
                         + ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in changed.items()))
    elif (out / RESUME_FILE).exists():
        parser.error(f"--out {out} already holds a run: continue it with --resume, or choose another --out")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    try:
        run(cfg)
    except (DatasetError, NonFiniteLoss, RunError) as err:
        hint = (f" The last good checkpoint is kept in {cfg.out}; try a lower --lr." if isinstance(err, NonFiniteLoss)
                else "")
        print(f"mixerkern.train: error: {err}.{hint}", file=sys.stderr)
        return 1
    return 0
