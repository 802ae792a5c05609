"""Op-level benchmark of ``mixerkern.functional.token_mlp``: fused vs reference vs torch.compile
(see _op_bench)."""
import pytest

from ._op_bench import CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", CONFIGS)
def test_token_mlp(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "token_mlp", pass_, dtype, provider)
