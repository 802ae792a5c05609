import contextlib
import os

import torch

# Without a GPU the Triton kernels (tests/triton) run under Triton's interpreter. Triton reads the
# switch when it is first imported, and torch.compile may import it early: set it before anything.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import mixerkern  # noqa: E402


def pytest_report_header(config):
    return f"mixerkern backends: {mixerkern.backend_info()}"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@contextlib.contextmanager
def cpu_isa(isa: str):
    """Temporarily force the compiled CPU kernels onto one instruction set."""
    previous = mixerkern.cpu_isa()
    mixerkern.set_cpu_isa(isa)
    try:
        yield
    finally:
        mixerkern.set_cpu_isa(previous)


def compiled_isas():
    """The ISAs to test: all that the CPU runs, or none if the compiled kernels are not loaded."""
    if mixerkern.cpu_isa() == "none":
        return []
    with cpu_isa("auto"):
        best = mixerkern.cpu_isa()
    return sorted({"generic", best})


FALLBACK_ALLOWED = os.environ.get("MIXERKERN_ALLOW_FALLBACK") == "1"
