"""The error type and the label check shared by the readers."""
from __future__ import annotations

import numpy as np


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt, unsafe or not in the expected official format."""


def check_labels(labels: np.ndarray, count: int, num_classes: int, source: str) -> np.ndarray:
    """Returns ``labels`` as int64 after checking it holds ``count`` integers in [0, num_classes)."""
    if labels.dtype.kind not in "iu" or labels.shape != (count,):
        raise DatasetError(f"{source}: expected {count} integer labels (one per image), got "
                           f"{labels.dtype} array of shape {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DatasetError(f"{source}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside "
                           f"[0, {num_classes}) ({bad.size} such labels)")
    return labels.astype(np.int64, copy=False)
