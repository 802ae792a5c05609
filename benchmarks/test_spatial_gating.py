"""Op-level benchmark of ``mixerkern.functional.spatial_gating``: fused vs reference vs torch.compile
(see _op_bench)."""
import pytest

from ._op_bench import CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", CONFIGS)
def test_spatial_gating(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "spatial_gating", pass_, dtype, provider)
