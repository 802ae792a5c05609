"""Triton kernel tests. Without a GPU they run under the Triton interpreter on CPU tensors (tests/conftest.py
switches it on before anything imports triton)."""
import importlib.util

import pytest
import torch

if importlib.util.find_spec("triton") is None:  # the test extra installs it; CPU-only users need not
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
