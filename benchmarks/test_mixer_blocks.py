"""Op-level benchmark of ``mixerkern.functional.mixer_blocks`` (mixer-cifar100's four blocks): fused
vs reference vs torch.compile (see _op_bench)."""
import pytest

from ._op_bench import INFERENCE_CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", INFERENCE_CONFIGS)
def test_mixer_blocks(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "mixer_blocks", pass_, dtype, provider)
