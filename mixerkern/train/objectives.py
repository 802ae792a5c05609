"""What a model is trained to do: its loss, its metrics, and how they are summed over batches and ranks.

A model names its objective in its ``objective`` attribute. Every metric is accumulated as a sum
over examples (``tally``) and divided by the example count after the cross-rank reduction, so
distributed and single-process runs report the same numbers.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


class Classification:
    """Cross-entropy on logits; top-1 and top-5 accuracy."""
    tallies = ("acc", "top5")
    primary = "acc"  # the metric the curves and the console line lead with
    normalize_inputs = True

    @staticmethod
    def target(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y

    @staticmethod
    def loss_sum(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), target, reduction="sum")

    @staticmethod
    def tally(out: torch.Tensor, target: torch.Tensor) -> list[float]:
        top5 = out.topk(min(5, out.shape[1]), dim=1).indices
        hits = top5 == target[:, None]
        return [hits[:, 0].sum().item(), hits.any(1).sum().item()]

    @staticmethod
    def summarize(loss: float, means: dict[str, float]) -> dict[str, float]:
        return {"loss": loss, **means}


class Reconstruction:
    """Mean squared error against the input itself, on pixels scaled to [0, 1] (no normalization, so
    the RMSE is in the seed's units); RMSE over every pixel of the split."""
    tallies = ()
    primary = "rmse"
    normalize_inputs = False

    @staticmethod
    def target(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def loss_sum(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Per-image MSE, summed: the mean over images is then the MSE over all pixels.
        return F.mse_loss(out.float(), target.float(), reduction="none").flatten(1).mean(1).sum()

    @staticmethod
    def tally(out: torch.Tensor, target: torch.Tensor) -> list[float]:
        return []

    @staticmethod
    def summarize(loss: float, means: dict[str, float]) -> dict[str, float]:
        return {"loss": loss, "rmse": math.sqrt(max(loss, 0.0))}


OBJECTIVES = {"classification": Classification, "reconstruction": Reconstruction}


def objective_of(model: torch.nn.Module | type):
    """The objective of a model or model class (or of the model a DistributedDataParallel wrapper holds)."""
    name = getattr(getattr(model, "module", model), "objective", "classification")
    return OBJECTIVES[name]

