"""Op-level benchmark of ``mixerkern.functional.fourier_mixing``: fused vs reference vs torch.compile
(see _op_bench)."""
import pytest

from ._op_bench import CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", CONFIGS)
def test_fourier_mixing(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "fourier_mixing", pass_, dtype, provider)
