"""Op-level benchmark of ``mixerkern.functional.channel_mixing_postnorm`` (FNet's feed-forward
sub-layer): fused vs reference vs torch.compile (see _op_bench)."""
import pytest

from ._op_bench import CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", CONFIGS)
def test_channel_mixing_postnorm(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "channel_mixing_postnorm", pass_, dtype, provider)
