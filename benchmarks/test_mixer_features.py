"""Op-level benchmark of ``mixerkern.functional.mixer_features`` (mixer-cifar100's stem and four
blocks, pooled): fused vs reference vs torch.compile, at inference (see _op_bench). Its fwd+bwd is
the ops one by one, timed by the patch_embed and mixer_blocks rows."""
import pytest

from ._op_bench import INFERENCE_CONFIGS, run_op_benchmark


@pytest.mark.parametrize("pass_,dtype,provider", [c for c in INFERENCE_CONFIGS if c[0] == "infer"])
def test_mixer_features(benchmark, pass_, dtype, provider):
    run_op_benchmark(benchmark, "mixer_features", pass_, dtype, provider)
