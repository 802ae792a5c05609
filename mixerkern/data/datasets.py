"""The public entry point: ``load_dataset(name, split)`` -> ``ImageArrays``."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from .cifar import read_cifar
from .locate import Located, locate
from .mnist import read_mnist
from .sources import DATASETS

SPLITS = ("train", "test")


@dataclass
class ImageArrays:
    """A whole split in memory, in the official file order."""
    images: torch.Tensor   # uint8, (N, C, H, W), contiguous
    labels: torch.Tensor   # int64, (N,)
    num_classes: int
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({len(self.images)},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | torch.Tensor) -> ImageArrays:
        """The examples at ``index`` (a slice, or a LongTensor / bool mask), as a new ImageArrays."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index)
            index = index if index.dtype == torch.bool else index.long()
        return ImageArrays(self.images[index].contiguous(), self.labels[index].contiguous(),
                           self.num_classes, list(self.class_names))


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None,
                 download: bool = True) -> ImageArrays:
    """Loads ``split`` ("train" / "test") of ``name`` ("cifar10", "cifar100", "mnist").

    Looks in ``data_dir``, then in ``default_cache_dir()``, then downloads (unless
    ``download=False``); see ``mixerkern.data.locate``. Decoded splits are cached in-process, so
    the returned tensors are shared between calls: do not modify them in place.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    located = locate(DATASETS[name], split, data_dir, download)
    # size + mtime in the key: a file replaced on disk is decoded again
    stamp = tuple((st.st_size, st.st_mtime_ns) for st in map(os.stat, located.files))
    images, labels, names = _decode(name, split, located, stamp)
    return ImageArrays(images, labels, DATASETS[name].num_classes, list(names))


@functools.lru_cache(maxsize=8)
def _decode(name: str, split: str, located: Located, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    spec = DATASETS[name]
    images, labels, names = (read_cifar if spec.cifar else read_mnist)(spec, split, located)
    return torch.from_numpy(images), torch.from_numpy(labels), tuple(names)
