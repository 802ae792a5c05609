"""Triton kernel tests. Without a GPU they run under the Triton interpreter on CPU tensors, which
must be switched on before any kernel is defined (i.e. before mixerkern.triton is imported)."""
import importlib.util
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

if importlib.util.find_spec("triton") is None:  # the test extra installs it; CPU-only users need not
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
