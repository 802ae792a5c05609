"""Per-epoch metrics of a run (metrics.csv, history.json, the learning-curve PNG) and, for
autoencoders, the reconstruction grid."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from ..models.checkpoint import atomic_replace

TIMING = ("lr", "img_per_s", "data_s", "epoch_s")


def columns(history: list[dict]) -> list[str]:
    """epoch, the training metrics, their validation twins, then the rate and timing columns."""
    first = history[0] if history else {}
    metrics = [k for k in first if k not in ("epoch", *TIMING) and not k.startswith("val_")]
    return ["epoch", *metrics, *(f"val_{k}" for k in metrics if f"val_{k}" in first), *TIMING]


def write(out: Path, history: list[dict], primary: str = "acc") -> None:
    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns(history))
            w.writeheader()
            w.writerows({k: row.get(k) for k in columns(history)} for row in history)

    atomic_replace(out / "metrics.csv", write_csv)
    atomic_replace(out / "history.json", lambda tmp: tmp.write_text(json.dumps(history, indent=1)))
    plot(out / "curves.png", history, primary)


LABELS = {"loss": "loss", "acc": "top-1 accuracy", "rmse": "RMSE (pixels in [0, 1])"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    return plt


def plot(path: Path, history: list[dict], primary: str = "acc") -> None:
    """Loss and the primary metric (top-1 accuracy, or RMSE) per epoch, train against validation."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in ((axes[0], "loss"), (axes[1], primary)):
        label = LABELS.get(key, key)
        ax.plot(epochs, [h[key] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


@torch.no_grad()
def reconstruction_grid(path: Path, model, images, preprocess, device, count: int = 8) -> None:
    """The first ``count`` test images (top row) above the model's reconstructions (bottom row)."""
    model.eval()
    x = preprocess(images.images[:count]).to(device)
    pairs = torch.stack([x, model(x).float()]).clamp(0, 1).cpu()  # (2, n, C, H, W), pixels in [0, 1]
    plt = _pyplot()
    n = pairs.shape[1]
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for row, title in enumerate(("input", "reconstruction")):
        for i in range(n):
            ax = axes[row][i]
            img = pairs[row, i].permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(title)
    fig.tight_layout()
    atomic_replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
