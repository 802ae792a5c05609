"""Model-level benchmark of the gmlp-cifar100 classifier: eager vs torch.compile vs fused (see _model_bench)."""
import pytest

from ._model_bench import CONFIGS, run_model_benchmark


@pytest.mark.parametrize("mode,dtype,threads,provider", CONFIGS)
def test_gmlp(benchmark, mode, dtype, threads, provider):
    run_model_benchmark(benchmark, "gmlp-cifar100", mode, dtype, threads, provider)
