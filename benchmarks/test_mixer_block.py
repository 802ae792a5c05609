"""Op-level benchmark of ``mixerkern.functional.mixer_block``: fused vs reference vs torch.compile
(see _op_bench)."""
import pytest

from ._op_bench import CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", CONFIGS)
def test_mixer_block(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "mixer_block", pass_, dtype, provider)
