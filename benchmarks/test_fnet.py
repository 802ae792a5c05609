"""Model-level benchmark of the fnet-cifar100 classifier: eager vs torch.compile vs fused (see _model_bench)."""
import pytest

from ._model_bench import CONFIGS, run_model_benchmark


@pytest.mark.parametrize("mode,dtype,threads,provider", CONFIGS)
def test_fnet(benchmark, mode, dtype, threads, provider):
    run_model_benchmark(benchmark, "fnet-cifar100", mode, dtype, threads, provider)
