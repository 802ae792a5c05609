"""mixerkern.data.pipeline: normalization, resize, flip, zoom, batching and sharding."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mixerkern.data.pipeline import (ZOOM, Preprocess, augment_params, channel_stats, epoch_batches, flip_images,
                                     shard, zoom_images)


def random_images(n=6, c=3, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_channel_stats_match_numpy():
    images = random_images(50)
    mean, std = channel_stats(images, chunk=7)  # several chunks
    arr = images.numpy().astype(np.float64)
    np.testing.assert_allclose(mean, arr.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, arr.std(axis=(0, 2, 3)), rtol=1e-9)


def test_eval_path_is_normalize_then_bilinear_resize_and_deterministic():
    images = random_images()
    pre = Preprocess.fit(images, 64)
    out = pre(images)
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    expected = F.interpolate((images.double() - mean) / std, size=(64, 64), mode="bilinear", align_corners=False)
    assert out.shape == (6, 3, 64, 64) and out.dtype == torch.float32
    assert torch.allclose(out.double(), expected, atol=1e-5)
    assert torch.equal(out, pre(images))


def test_flip_is_an_exact_mirror():
    x = torch.randn(4, 3, 8, 8)
    flip = torch.tensor([True, False, True, False])
    y = flip_images(x, flip)
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[2], x[2].flip(-1))
    assert torch.equal(y[1], x[1]) and torch.equal(y[3], x[3])


def test_zoom_factors_stay_in_range_and_cover_it():
    flip, zoom = augment_params(20000, torch.Generator().manual_seed(1))
    assert zoom.min() >= 1 - ZOOM and zoom.max() <= 1 + ZOOM
    assert zoom.min() < 1 - 0.95 * ZOOM and zoom.max() > 1 + 0.95 * ZOOM  # both ends reached
    assert abs(zoom[:, 0] - zoom[:, 1]).mean() > 0.05  # height and width drawn independently
    assert 0.45 < flip.float().mean() < 0.55


def test_zoom_scales_about_the_centre():
    # A horizontal ramp f(x) = x sampled at c + s (p - c) has slope s inside the image.
    ramp = torch.arange(32, dtype=torch.float32).expand(1, 1, 32, 32).contiguous()
    for s in (0.8, 1.0, 1.2):
        out = zoom_images(ramp, torch.tensor([[s, 1.0]]))
        slope = (out[0, 0, 16, 20] - out[0, 0, 16, 12]) / 8
        assert abs(slope - s) < 1e-4, (s, slope)
        assert torch.allclose(out[0, 0, :, 16], out[0, 0, 0, 16].expand(32))  # rows untouched (y scale 1)
    # Zooming out reads past the border: reflect fill keeps values inside the image's range.
    out = zoom_images(ramp, torch.tensor([[1.2, 1.2]]))
    assert out.min() >= 0 and out.max() <= 31


def test_identity_augmentation_equals_eval():
    images = random_images()
    pre = Preprocess.fit(images, 40)
    params = (torch.zeros(6, dtype=torch.bool), torch.ones(6, 2))
    assert torch.allclose(pre(images, train=True, params=params), pre(images), atol=1e-5)


def test_training_path_is_reproducible_from_the_generator():
    images = random_images()
    pre = Preprocess.fit(images, 64)
    a = pre(images, train=True, generator=torch.Generator().manual_seed(3))
    b = pre(images, train=True, generator=torch.Generator().manual_seed(3))
    c = pre(images, train=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batches_cover_each_index_once_and_shards_partition_a_batch():
    batches = list(epoch_batches(103, 16, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [16] * 6 + [7]
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    for n in (0, 1, 7, 16):
        for world in (1, 2, 3):
            parts = [range(n)[shard(n, r, world)] for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8),
                                 torch.zeros(2, 1, 8, 8, dtype=torch.uint8)])
def test_bad_input_names_the_expected_shape(bad):
    pre = Preprocess([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 16)
    with pytest.raises(ValueError, match=r"uint8 \(B, 3, H, W\)"):
        pre(bad)
