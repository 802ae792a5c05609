"""Per-epoch metrics of a run: metrics.csv, history.json and the learning-curve PNG."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..models.checkpoint import atomic_replace

COLUMNS = ("epoch", "loss", "acc", "top5", "val_loss", "val_acc", "val_top5", "lr", "img_per_s", "data_s", "epoch_s")


def write(out: Path, history: list[dict]) -> None:
    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows({k: row.get(k) for k in COLUMNS} for row in history)

    atomic_replace(out / "metrics.csv", write_csv)
    atomic_replace(out / "history.json", lambda tmp: tmp.write_text(json.dumps(history, indent=1)))
    plot(out / "curves.png", history)


def plot(path: Path, history: list[dict]) -> None:
    """Loss and top-1 accuracy per epoch, train against validation."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "top-1 accuracy")):
        ax.plot(epochs, [h[key] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
