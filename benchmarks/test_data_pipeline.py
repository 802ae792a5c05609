"""Throughput of the training data pipeline (mixerkern.data.pipeline) on CIFAR-shaped uint8 batches
(3 x 32 x 32 -> 64 x 64, as in the seed), 1 thread. The summary compares it with the fastest fused
training step measured in the same run: the pipeline must not be what limits training (>= 5x)."""
import pytest
import torch

from mixerkern.data.pipeline import Preprocess

from . import _common


@pytest.mark.parametrize("path", ["train", "eval"])
def test_data_pipeline(benchmark, path):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8, generator=gen)
    preprocess = Preprocess.fit(images, 64)
    batch = images[torch.randperm(len(images), generator=gen)[:_common.BATCH]]  # a gathered, shuffled batch
    out = benchmark(preprocess, batch, train=path == "train", generator=gen)
    assert out.shape == (_common.BATCH, 3, 64, 64) and torch.isfinite(out).all()
    rate = _common.BATCH / benchmark.stats.stats.mean
    benchmark.extra_info.update(img_per_s_per_core=rate, path=path)
    _common.PIPELINE[path] = rate
