"""The seed experiment's training loop: AdamW + cross-entropy, top-1/top-5 (or, for autoencoders, MSE and
RMSE; see objectives.py), the last 10 % of the
training split for validation (Keras validation_split), ReduceLROnPlateau(0.5, 5) and
EarlyStopping(10, restore best) on the validation loss, then the test split.

Determinism: each epoch's shuffling, augmentation and dropout seeds are functions of (seed,
epoch), so a resumed run continues exactly as if it had never stopped.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from ..data import ImageArrays, load_dataset
from ..data.pipeline import Preprocess, augment_params, epoch_batches, shard
from ..models import ARCHITECTURES, create_model, get_preset
from ..models.checkpoint import atomic_replace, save
from ..ops import OPS, backend_info
from . import distributed, history
from .callbacks import EarlyStopping
from .objectives import objective_of

# The seeds' learning rates: per block family for the patch models, Adam's 1e-3 for the patchless ones.
DEFAULT_LR = {"mixer": 0.005, "fnet": 0.001, "gmlp": 0.003, "patchless": 0.001, "patchless-ae": 0.001}
VALIDATION_SPLIT = 0.1
LR_FACTOR, LR_PATIENCE, STOP_PATIENCE = 0.5, 5, 10
RESUME_FILE = "resume.pt"


class NonFiniteLoss(RuntimeError):
    pass


class RunError(ValueError):
    """A setting that cannot work with this data or this launch (reported without a traceback)."""


@dataclass
class RunConfig:
    model: str
    dataset: str = "cifar100"
    data_dir: str | None = None
    download: bool = True
    epochs: int = 50
    batch_size: int = 128  # global: split across the ranks of a distributed run
    lr: float | None = None
    weight_decay: float = 1e-4
    fused: bool = True
    bf16: bool = False
    threads: int | None = None
    seed: int = 42
    limit: int | None = None
    out: str = "runs/default"
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    flip: bool | None = None  # random horizontal flips; None: on, except for MNIST (digits are not mirror-symmetric)
    zoom: bool = True  # random zoom (Keras RandomZoom(0.2, 0.2)) in training
    overrides: dict[str, Any] = field(default_factory=dict)  # create_model overrides

    def learning_rate(self) -> float:
        preset = get_preset(self.model)
        family = self.overrides.get("block", preset.get("block", preset.get("arch")))
        return self.lr if self.lr is not None else DEFAULT_LR[family]

    # Fields a resumed run must share with the run it continues.
    # (--fused may change: both block kinds have the same weights and math.)
    IDENTITY = ("model", "dataset", "batch_size", "lr", "weight_decay", "bf16", "seed", "limit", "overrides", "flip",
                "zoom")

    def flips(self) -> bool:
        return self.flip if self.flip is not None else self.dataset != "mnist"

    def identity(self) -> dict[str, Any]:
        return {k: (self.learning_rate() if k == "lr" else getattr(self, k)) for k in self.IDENTITY}


@dataclass
class Data:
    train: ImageArrays
    val: ImageArrays
    test: ImageArrays
    preprocess: Preprocess


def prepare_data(cfg: RunConfig, image_size: int, normalize: bool = True) -> Data:
    train = load_dataset(cfg.dataset, "train", cfg.data_dir, download=cfg.download)
    test = load_dataset(cfg.dataset, "test", cfg.data_dir, download=cfg.download)
    if cfg.limit is not None:
        train, test = train.subset(slice(0, cfg.limit)), test.subset(slice(0, cfg.limit))
    # Keras: normalization adapted on all of x_train; validation_split takes the last 10 %, unshuffled.
    # Without normalization, pixels are only scaled to [0, 1].
    channels = train.images.shape[1]
    preprocess = (Preprocess.fit(train.images, image_size) if normalize
                  else Preprocess([0.0] * channels, [255.0] * channels, int(image_size)))
    cut = int(len(train) * (1 - VALIDATION_SPLIT))  # Keras: split_at = int(n * (1 - validation_split))
    if cut < 1 or cut >= len(train):
        raise RunError(f"{cfg.dataset}: {len(train)} training images are too few for a 10 % validation split")
    return Data(train.subset(slice(0, cut)), train.subset(slice(cut, None)), test, preprocess)


class Totals:
    """Summed loss, the objective's metric tallies and the example count; reduced over ranks before reading."""

    def __init__(self, objective):
        self.objective = objective
        self.values = torch.zeros(2 + len(objective.tallies), dtype=torch.float64)

    def add(self, loss_sum: torch.Tensor, out: torch.Tensor, target: torch.Tensor) -> None:
        self.values += torch.tensor([loss_sum.item(), *self.objective.tally(out, target), len(out)],
                                    dtype=torch.float64)

    def means(self, values: torch.Tensor | None = None) -> dict[str, float]:
        loss, *tallies, n = (self.values if values is None else values).tolist()
        n = max(n, 1)
        return self.objective.summarize(loss / n, {k: t / n for k, t in zip(self.objective.tallies, tallies)})

    def summary(self, ctx: distributed.Context) -> dict[str, float]:
        return self.means(ctx.all_sum(self.values.clone()))


def autocast(cfg: RunConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()


def epoch_seed(cfg: RunConfig, epoch: int) -> int:
    return cfg.seed * 1_000_003 + epoch


def train_epoch(model, opt, data: Data, cfg: RunConfig, ctx: distributed.Context, epoch: int,
                on_step: Callable[[int, int], None] | None = None) -> dict[str, float]:
    model.train()
    gen = torch.Generator().manual_seed(epoch_seed(cfg, epoch))
    torch.manual_seed(epoch_seed(cfg, epoch) * 7919 + ctx.rank)  # dropout masks
    objective = objective_of(model)
    totals, data_s, t0 = Totals(objective), 0.0, time.perf_counter()
    n = len(data.train)
    steps = -(-n // cfg.batch_size)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and ctx.is_main),
               leave=True, dynamic_ncols=True)
    for step, idx in enumerate(epoch_batches(n, cfg.batch_size, shuffle=True, generator=gen)):
        # Every rank draws the whole global batch's augmentation, then keeps its own slice.
        flip, zoom = augment_params(len(idx), gen)
        flip &= cfg.flips()
        if not cfg.zoom:
            zoom.fill_(1.0)
        part = shard(len(idx), ctx.rank, ctx.world_size)
        td = time.perf_counter()
        x = data.preprocess(data.train.images[idx[part]], train=True, params=(flip[part], zoom[part]))
        y = data.train.labels[idx[part]]
        data_s += time.perf_counter() - td
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        target = objective.target(x, y)
        with autocast(cfg, ctx.device):
            out = model(x)
        loss_sum = objective.loss_sum(out, target)
        # DDP averages gradients over ranks, so this is the gradient of the global batch's mean loss.
        loss = loss_sum * (ctx.world_size / len(idx))
        bad = ctx.all_sum(torch.tensor([0.0 if torch.isfinite(loss_sum) else 1.0]))
        if bad.item() > 0:
            raise NonFiniteLoss(f"the training loss became non-finite at epoch {epoch + 1}, step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        totals.add(loss_sum.detach().cpu(), out.detach().float().cpu(), target.cpu())
        if bar.n % 10 == 0 or step == steps - 1:
            seen = totals.values[-1].item() * ctx.world_size
            running = totals.means()
            bar.set_postfix(loss=f"{running['loss']:.4f}", **{objective.primary: f"{running[objective.primary]:.4f}"},
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        bar.update()
        if on_step is not None:
            on_step(epoch, step)
    bar.close()
    elapsed = time.perf_counter() - t0
    return {**totals.summary(ctx), "img_per_s": n / elapsed, "data_s": data_s, "epoch_s": elapsed}


@torch.no_grad()
def evaluate(model, images: ImageArrays, preprocess: Preprocess, cfg: RunConfig, ctx: distributed.Context) -> dict:
    model.eval()
    objective = objective_of(model)
    totals = Totals(objective)
    for idx in epoch_batches(len(images), cfg.batch_size, shuffle=False):
        local = idx[shard(len(idx), ctx.rank, ctx.world_size)]
        x = preprocess(images.images[local]).to(ctx.device)
        target = objective.target(x, images.labels[local].to(ctx.device))
        with autocast(cfg, ctx.device):
            out = model(x).float()
        totals.add(objective.loss_sum(out, target).cpu(), out.cpu(), target.cpu())
    return totals.summary(ctx)


def fused_devices() -> set[str]:
    """Device types on which every fused op has kernels."""
    info = backend_info()
    return set.intersection(*(set(info[op]) for op in OPS))


def training_device(cfg: RunConfig) -> str:
    """--device auto: CUDA when present and usable by the chosen blocks (fused ops need CUDA kernels)."""
    if cfg.device == "cuda" and cfg.fused and "cuda" not in fused_devices():
        raise RunError("--device cuda: the fused ops have no CUDA kernels in this build; use --no-fused on the GPU")
    if cfg.device == "auto":
        usable = torch.cuda.is_available() and (not cfg.fused or "cuda" in fused_devices())
        return "cuda" if usable else "cpu"
    return cfg.device


def run(cfg: RunConfig, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Trains, evaluates on the test split and returns the final test metrics."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = distributed.setup(training_device(cfg))
    try:
        result = _run(cfg, ctx, on_step)
    except BaseException:
        distributed.teardown()  # no barrier: the other ranks may never reach it
        raise
    distributed.teardown(sync=True)
    return result


def _run(cfg: RunConfig, ctx: distributed.Context, on_step) -> dict[str, Any]:
    out = Path(cfg.out)
    preset = get_preset(cfg.model)
    image_size = cfg.overrides.get("image_size", preset["image_size"])
    image_size = image_size if isinstance(image_size, int) else image_size[0]
    objective = objective_of(ARCHITECTURES[cfg.overrides.get("arch", preset.get("arch", "patch"))])
    data = prepare_data(cfg, image_size, normalize=objective.normalize_inputs)
    if ctx.device.type != "cpu":  # preprocess where the model runs: the CPU would not keep up with a GPU
        data.train, data.val, data.test = (replace(a, images=a.images.to(ctx.device))
                                           for a in (data.train, data.val, data.test))
    if cfg.batch_size < ctx.world_size:
        raise RunError(f"--batch-size {cfg.batch_size} is smaller than the {ctx.world_size} processes sharing it")
    # The dataset's class and channel counts, for the presets that have those fields.
    data_fields = {"num_classes": data.train.num_classes, "in_chans": data.train.images.shape[1]}
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = create_model(cfg.model, fused=cfg.fused, **{**{k: v for k, v in data_fields.items() if k in preset},
                                                        **cfg.overrides}).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate(), weight_decay=cfg.weight_decay, eps=1e-7)
    # Keras lowers the rate once `patience` epochs went by without improvement; torch waits one more.
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=LR_FACTOR, patience=LR_PATIENCE - 1,
                                                       threshold=1e-4, threshold_mode="abs")
    stopper, hist, start = EarlyStopping(STOP_PATIENCE), [], 0
    if cfg.resume:
        state = torch.load(out / RESUME_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        stopper.load_state_dict(state["early_stopping"])
        hist, start = state["history"], state["epoch"]
    train_model = model
    if ctx.world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    meta = {"preprocess": {"mean": data.preprocess.mean, "std": data.preprocess.std,
                           "image_size": data.preprocess.image_size}, "dataset": cfg.dataset}
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        summary = {"model_config": model.config, "run": {**cfg.__dict__, "lr": cfg.learning_rate()},
                   "identity": cfg.identity(), **meta,
                   "world_size": ctx.world_size, "parameters": sum(p.numel() for p in model.parameters())}
        atomic_replace(out / "run.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1, default=str)))
    stopped = start > 0 and stopper.wait >= stopper.patience
    for epoch in range(start, cfg.epochs if not stopped else start):
        metrics = train_epoch(train_model, opt, data, cfg, ctx, epoch, on_step)
        val = evaluate(model, data.val, data.preprocess, cfg, ctx)
        if not (math.isfinite(val["loss"]) and all(torch.isfinite(p).all() for p in model.parameters())):
            raise NonFiniteLoss(f"the weights or the validation loss became non-finite in epoch {epoch + 1}")
        lr = opt.param_groups[0]["lr"]
        sched.step(val["loss"])
        stop = stopper.step(val["loss"], epoch, model)
        hist.append({"epoch": epoch + 1, **metrics, **{f"val_{k}": v for k, v in val.items()}, "lr": lr})
        if ctx.is_main:
            _save_epoch(out, model, opt, sched, stopper, hist, epoch, meta)
            if cfg.progress:
                train_part = " ".join(f"{k} {metrics[k]:.4f}" for k in val if k != "top5")
                val_part = " ".join(f"val_{k} {v:.4f}" for k, v in val.items())
                print(f"epoch {epoch + 1}: {train_part} | {val_part} | lr {lr:.2e} | {metrics['img_per_s']:.0f} img/s "
                      f"(data {metrics['data_s']:.1f} s of {metrics['epoch_s']:.1f} s)", flush=True)
        if stop:
            break
    stopper.restore(model)
    test = {f"test_{k}": v for k, v in evaluate(model, data.test, data.preprocess, cfg, ctx).items()}
    test.update(best_epoch=stopper.best_epoch + 1, epochs_run=len(hist))
    if ctx.is_main:
        atomic_replace(out / "test_metrics.json", lambda tmp: tmp.write_text(json.dumps(test, indent=1)))
        if objective.primary == "rmse":
            history.reconstruction_grid(out / "reconstructions.png", model, data.test, data.preprocess, ctx.device)
            print(f"test RMSE {test['test_rmse']:.5f} (pixels in [0, 1]; best epoch {test['best_epoch']})", flush=True)
        else:
            print(f"test accuracy {test['test_acc']:.4f}, test top-5 accuracy {test['test_top5']:.4f} "
                  f"(best epoch {test['best_epoch']})", flush=True)
    return test


def _save_epoch(out: Path, model, opt, sched, stopper: EarlyStopping, hist: list[dict], epoch: int, meta: dict) -> None:
    """Weights (last, and best when it improved), metrics, curves, then the resume state: that one
    file carries everything a resumed run needs, so a crash between writes loses nothing."""
    save(model, out / "last.safetensors", epoch=epoch + 1, **meta)
    if stopper.improved:
        save(model, out / "best.safetensors", epoch=epoch + 1, **meta)
    history.write(out, hist, objective_of(model).primary)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "early_stopping": stopper.state_dict(), "history": hist, "epoch": epoch + 1}
    atomic_replace(out / RESUME_FILE, lambda tmp: torch.save(state, tmp))
