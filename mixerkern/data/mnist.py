"""Reads MNIST's IDX files (gzip'd as published, or already uncompressed).

Format: a big-endian header -- magic ``0x00000803`` for images / ``0x00000801`` for labels (the
low byte is the number of dimensions, the one before it 0x08 = uint8), then one uint32 per
dimension (N, 28, 28 / N) -- followed by exactly prod(dims) uint8 values, row-major.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .checks import DatasetError, check_labels
from .locate import Located
from .sources import DatasetSpec

_IMAGES, _LABELS = 0x00000803, 0x00000801


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"  # by content, not name: either may be renamed
        with (gzip.open if gzipped else open)(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read ({type(error).__name__}: {error}); a truncated "
                           "or corrupt download?") from error


def _parse_idx(path: Path, magic: int, trailing_dims: tuple[int, ...]) -> np.ndarray:
    """Returns the IDX payload as a read-only uint8 array of shape (N, *trailing_dims)."""
    raw = _read(path)
    header = 4 * (2 + len(trailing_dims))
    if len(raw) < header:
        raise DatasetError(f"{path}: {len(raw)} bytes, shorter than the {header}-byte IDX header")
    got, *dims = struct.unpack(f">{header // 4}I", raw[:header])
    if got != magic:
        raise DatasetError(f"{path}: IDX magic number 0x{got:08x}, expected 0x{magic:08x}")
    if tuple(dims[1:]) != trailing_dims:
        raise DatasetError(f"{path}: IDX dimensions {dims}, expected (N, {', '.join(map(str, trailing_dims))})")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(f"{path}: the header promises {dims} = {expected} bytes of data but the file "
                           f"holds {len(raw) - header} ({'truncated' if len(raw) - header < expected else 'trailing bytes'})")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_mnist(spec: DatasetSpec, split: str, located: Located) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Returns (images uint8 (N, 1, 28, 28), labels int64 (N,), class names), in file order."""
    images_path, labels_path = located.files
    images = _parse_idx(images_path, _IMAGES, spec.image_shape[1:])
    labels = _parse_idx(labels_path, _LABELS, ())
    if len(labels) != len(images):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}")
    labels = check_labels(labels, len(images), spec.num_classes, str(labels_path))
    # copy: frombuffer over bytes is read-only, and torch wants writable memory
    return images.reshape(-1, *spec.image_shape).copy(), labels, list(spec.class_names)
