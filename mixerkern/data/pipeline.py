"""Batched preprocessing on whole uint8 arrays, equivalent to the seed's Keras pipeline:

    Normalization (adapted on the training split) -> Resizing(size, size) -> RandomFlip("horizontal")
    -> RandomZoom(0.2, 0.2)   (the last two in training only)

All steps are per-batch tensor ops (no per-image Python). Normalization and the bilinear steps
commute (bilinear weights sum to 1), so normalizing first, on the small source image, gives the
same result for less work.

Randomness comes from an explicit ``torch.Generator``. Every rank of a distributed run draws the
parameters for the whole global batch and keeps its own slice, so a run's augmentations do not
depend on how many processes share the batch.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

ZOOM = 0.2  # Keras RandomZoom(height_factor=0.2, width_factor=0.2): scale in [1 - 0.2, 1 + 0.2]


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), accumulated in float64
    (Keras' Normalization.adapt: population variance)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    c = images.shape[1]
    total, total_sq, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].to(torch.float64).transpose(0, 1).reshape(c, -1)
        total += part.sum(1)
        total_sq += (part * part).sum(1)
        count += part.shape[1]
    mean = total / max(count, 1)
    var = (total_sq / max(count, 1) - mean * mean).clamp_min(0)
    return mean.tolist(), var.sqrt().clamp_min(1e-3).tolist()


@dataclass
class Preprocess:
    """uint8 (B, C, h, w) -> float32 (B, C, size, size), normalized; augmented when ``train``."""
    mean: list[float]
    std: list[float]
    image_size: int

    @classmethod
    def fit(cls, train_images: torch.Tensor, image_size: int) -> "Preprocess":
        mean, std = channel_stats(train_images)
        return cls(mean, std, int(image_size))

    def __call__(self, images: torch.Tensor, train: bool = False, generator: torch.Generator | None = None,
                 params: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``params`` = (flip (B,) bool, zoom (B, 2) as (x, y) scales), e.g. a slice of
        ``augment_params`` for the global batch; drawn from ``generator`` when not given."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != len(self.mean):
            raise ValueError(f"images must be uint8 (B, {len(self.mean)}, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        inv_std = 1 / torch.tensor(self.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        x = (images.to(torch.float32) - mean) * inv_std
        if x.shape[-2:] != (self.image_size, self.image_size):
            # tf.image.resize (bilinear, no antialias) samples at half-pixel centers: align_corners=False.
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if not train or x.shape[0] == 0:
            return x
        flip, zoom = params if params is not None else augment_params(x.shape[0], generator)
        return zoom_images(flip_images(x, flip.to(x.device)), zoom.to(x.device))


def augment_params(batch: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips (B,) and independent (x, y) zoom scales (B, 2) in [1 - ZOOM, 1 + ZOOM]."""
    flip = torch.rand(batch, generator=generator) < 0.5
    zoom = 1 + ZOOM * (2 * torch.rand(batch, 2, generator=generator) - 1)
    return flip, zoom


def flip_images(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``flip`` is set (an exact left-right mirror)."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def zoom_images(x: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Keras RandomZoom: output pixel p samples the input at c + s (p - c) about the image centre c,
    bilinearly, with reflect fill outside; s > 1 zooms out, s < 1 zooms in. One grid_sample."""
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = zoom[:, 0], zoom[:, 1]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def epoch_batches(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
                  ) -> Iterator[torch.Tensor]:
    """Index tensors of the global batches of one epoch (the last one may be short)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


def shard(batch_len: int, rank: int, world_size: int) -> slice:
    """The contiguous part of a global batch of ``batch_len`` that ``rank`` handles."""
    return slice(rank * batch_len // world_size, (rank + 1) * batch_len // world_size)
