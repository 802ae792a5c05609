"""Op-level benchmark of ``mixerkern.functional.patch_embed``: fused vs reference vs torch.compile
(see _op_bench)."""
import pytest

from ._op_bench import CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", CONFIGS)
def test_patch_embed(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "patch_embed", pass_, dtype, provider)
