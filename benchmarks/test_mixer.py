"""Model-level benchmark of the mixer-cifar100 classifier: eager vs torch.compile vs fused (see _model_bench)."""
import pytest

from ._model_bench import CONFIGS, run_model_benchmark


@pytest.mark.parametrize("mode,dtype,threads,provider", CONFIGS)
def test_mixer(benchmark, mode, dtype, threads, provider):
    run_model_benchmark(benchmark, "mixer-cifar100", mode, dtype, threads, provider)
