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
    return sorted({"generic", best} | ({"avx512"} if best.startswith("avx512") else set()))


def cpuinfo(field: str) -> str:
    """A field of the first CPU in /proc/cpuinfo ("" where it is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == field), "")
    except OSError:
        return ""


def cpu_flags() -> set:
    """The CPU's feature flags as Linux names them."""
    return set(cpuinfo("flags").split())


def bf16_isas():
    """The ISAs to test bf16 on: compiled_isas() plus the bf16-dot table (its dot product emulated
    where the CPU lacks AVX512-BF16; the real one is the default where it has it)."""
    isas = compiled_isas()
    return sorted(set(isas) | {"avx512bf16-emulated"}) if any(i.startswith("avx512") for i in isas) else isas


FALLBACK_ALLOWED = os.environ.get("MIXERKERN_ALLOW_FALLBACK") == "1"
