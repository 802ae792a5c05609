"""mixerkern.analysis: CKA estimators against NumPy transcriptions of the published formulas, their
invariances, minibatch accumulation, sub-block capture (fused vs reference) and the CLI."""
import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mixerkern.analysis import (MinibatchCKA, capture, capture_modules, cka_matrix, hsic, kernel_cka, linear_cka,
                                median_distance, patch_map, stage_labels)
from mixerkern.analysis.cli import main
from mixerkern.models import create_model, save

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- NumPy references, written straight from the papers ------------------------------------------
def np_hsic0(k, l):
    """Gretton et al. 2005: tr(K H L H) / (n - 1)^2."""
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def np_hsic1(k, l):
    """Song et al. 2012, eq. 5, with the diagonals of K and L zeroed."""
    n = len(k)
    k, l, one = k - np.diag(np.diag(k)), l - np.diag(np.diag(l)), np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def np_cka(k, l, unbiased=False):
    h = np_hsic1 if unbiased else np_hsic0
    return h(k, l) / np.sqrt(h(k, k) * h(l, l))


def np_linear_gram(x):
    x = x.reshape(len(x), -1)
    return x @ x.T


def np_median_distance(x):
    x = x.reshape(len(x), -1)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return np.median(d[np.triu_indices(len(x), k=1)])


def np_rbf_gram(x, threshold=1.0, sigma=None):
    """Kornblith et al. 2019: exp(-|xi - xj|^2 / (2 sigma^2)), sigma = threshold x median distance."""
    x = x.reshape(len(x), -1)
    sigma = threshold * np_median_distance(x) if sigma is None else sigma
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma ** 2))


def randn(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def related(n, p, q, seed=0):
    """X and a noisy linear function of it, so that the CKAs are neither ~0 nor ~1."""
    x = randn(n, p, seed=seed)
    return x, x @ randn(p, q, seed=seed + 1) + 0.5 * randn(n, q, seed=seed + 2)


def orthogonal(p, seed=0):
    return np.linalg.qr(randn(p, p, seed=seed))[0]


# ---- estimators ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,p,q", [(20, 50, 30), (60, 5, 8)], ids=["grams", "feature-space"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_matches_numpy(n, p, q, unbiased):
    x, y = related(n, p, q)
    expected = np_cka(np_linear_gram(x), np_linear_gram(y), unbiased)
    assert linear_cka(torch.tensor(x), torch.tensor(y), unbiased=unbiased) == pytest.approx(expected, rel=1e-10)
    # float32 (n, p, 1) input with a large offset: flattened, and centred in float64 (both estimators
    # are shift-invariant; the centring only avoids cancellation, which the uncentred NumPy one suffers).
    x3 = torch.tensor(x + 100.0, dtype=torch.float32).reshape(n, p, 1)
    xc = x3.double().numpy() - x3.double().numpy().mean(0)
    assert linear_cka(x3, y, unbiased=unbiased) == pytest.approx(
        np_cka(np_linear_gram(xc), np_linear_gram(y), unbiased), rel=1e-10)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("threshold,sigma", [(1.0, None), (0.5, None), (1.0, 3.0)])
def test_kernel_cka_matches_numpy(unbiased, threshold, sigma):
    x, y = related(25, 6, 4, seed=3)
    expected = np_cka(np_rbf_gram(x, threshold, sigma), np_rbf_gram(y, threshold, sigma), unbiased)
    got = kernel_cka(torch.tensor(x), torch.tensor(y), sigma=sigma, threshold=threshold, unbiased=unbiased)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n", [5, 6])  # 10 and 15 pairs: the even count averages the middle two
def test_median_distance_matches_numpy(n):
    x = randn(n, 3, seed=n)
    assert median_distance(torch.tensor(x)) == pytest.approx(np_median_distance(x), rel=1e-12)


def test_hsic_estimators_match_numpy_on_any_symmetric_matrices():
    k, l = randn(9, 9, seed=1), randn(9, 9, seed=2)
    k, l = k + k.T, l + l.T
    assert float(hsic(torch.tensor(k), torch.tensor(l))) == pytest.approx(np_hsic0(k, l), rel=1e-10)
    assert float(hsic(torch.tensor(k), torch.tensor(l), unbiased=True)) == pytest.approx(np_hsic1(k, l), rel=1e-10)


@pytest.mark.parametrize("kind", ["linear", "kernel"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_properties(kind, unbiased):
    cka = linear_cka if kind == "linear" else kernel_cka
    x, y = related(30, 12, 7, seed=5)
    x, y = torch.tensor(x), torch.tensor(y)
    assert cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)
    base = cka(x, y, unbiased=unbiased)
    assert 0.05 < base < 0.99
    assert cka(y, x, unbiased=unbiased) == pytest.approx(base, abs=1e-12)  # symmetric
    rotated = x @ torch.tensor(orthogonal(12)) * 3.7 + 2.0  # orthogonal map, isotropic scale, offset
    assert cka(rotated, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    assert cka(x, 0.01 * y @ torch.tensor(orthogonal(7, seed=1)), unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    if not unbiased:  # the biased CKA is a cosine between centred PSD Grams: always in [0, 1]
        for seed in range(5):
            a, b = torch.tensor(randn(10, 3, seed=seed)), torch.tensor(randn(10, 40, seed=seed + 10))
            assert 0.0 <= cka(a, b) <= 1.0


def test_input_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="same number of examples"):
        linear_cka(x, torch.randn(9, 4))
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(x[:3], x[:3], unbiased=True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        kernel_cka(x, x.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="real tensor"):
        linear_cka(torch.randn(10, 2, dtype=torch.complex64), x)
    with pytest.raises(ValueError, match="kind must be one of"):
        MinibatchCKA("cosine")


def test_minibatch_unbiased_cka_is_the_full_sample_one_averaged_over_subsets():
    """HSIC_1 is a U-statistic of order 4: on n examples it is the mean of HSIC_1 over all 4-example
    subsets. Accumulated over every 4-subset, the minibatch CKA is exactly the full-sample unbiased CKA."""
    layers = {"a": torch.tensor(randn(8, 6, seed=1)), "b": torch.tensor(randn(8, 2, 2, seed=2)),
              "c": torch.tensor(related(8, 6, 3, seed=1)[1])}
    full = cka_matrix(layers, unbiased=True)
    assert full[0, 2] == pytest.approx(linear_cka(layers["a"], layers["c"], unbiased=True), abs=1e-12)
    for kind, sigma in (("linear", None), ("kernel", 2.0)):  # per-batch median sigmas would differ: fix it
        acc = MinibatchCKA(kind, unbiased=True, sigma=sigma)
        for subset in itertools.combinations(range(8), 4):
            acc.update({k: v[list(subset)] for k, v in layers.items()})
        assert acc.num_batches == 70 and acc.row_labels == ["a", "b", "c"]
        expected = full if kind == "linear" else cka_matrix(layers, "kernel", unbiased=True, sigma=sigma)
        torch.testing.assert_close(acc.compute(), expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(acc.compute().diagonal(), torch.ones(3, dtype=torch.float64))


def test_minibatch_accumulation_and_cross_matrices():
    xs = [torch.randn(40, 5, 3), torch.randn(40, 7)]
    ys = [torch.randn(40, 4), xs[1] @ torch.randn(7, 7) + 0.1 * torch.randn(40, 7), torch.randn(40, 2)]
    one = MinibatchCKA("kernel", unbiased=False)
    one.update(xs, ys)
    assert one.compute().shape == (2, 3)
    for i, j in itertools.product(range(2), range(3)):  # a single batch: the full-sample CKA
        assert one.compute()[i, j] == pytest.approx(kernel_cka(xs[i], ys[j]), abs=1e-12)
    acc = MinibatchCKA("linear", unbiased=True)
    halves = [(x[:20], x[20:]) for x in xs + ys]
    for part in (0, 1):
        acc.update([h[part] for h in halves[:2]], [h[part] for h in halves[2:]])
    # Two batches: summed numerators over the geometric mean of summed denominators.
    def summed(a, b):
        a, b = a.double(), b.double()
        return sum(float(hsic(a[s] @ a[s].T, b[s] @ b[s].T, unbiased=True)) for s in (slice(0, 20), slice(20, 40)))
    expected = summed(xs[1], ys[1]) / np.sqrt(summed(xs[1], xs[1]) * summed(ys[1], ys[1]))
    assert acc.compute()[1, 1] == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="differ from the earlier"):
        acc.update([xs[0][:20]], [ys[0][:20]])
    with pytest.raises(ValueError, match="do not mix"):
        acc.update([h[0] for h in halves[:2]])


# ---- capture ---------------------------------------------------------------------------------------
FAMILIES = {
    "mixer-cifar100": dict(token_hidden=16, channel_hidden=32),
    "gmlp-cifar100": dict(hidden=48),
    "fnet-cifar100": dict(hidden=48),
}
TINY = dict(image_size=16, patch_size=4, dim=32, depth=2, num_classes=10, dropout=0.1)


def model_pair(name: str):
    torch.manual_seed(0)
    reference = create_model(name, fused=False, **TINY, **FAMILIES[name])
    with torch.no_grad():  # move gMLP's near-identity gate (and every other weight) off its init
        for p in reference.parameters():
            p.add_(0.2 * torch.randn_like(p))
    fused = create_model(name, fused=True, **TINY, **FAMILIES[name])
    fused.load_state_dict(reference.state_dict())
    return reference, fused


@pytest.mark.parametrize("name", list(FAMILIES))
def test_capture_stages_match_forward_and_fused_matches_reference(name):
    reference, fused = model_pair(name)
    images = torch.randn(3, 3, 16, 16)
    labels = ["L0B0", "L0B1", "L1B0", "L1B1"]
    results = {}
    for model in (reference, fused):
        model.train()  # capture runs in eval mode and restores the mode
        stages = capture(model, images)
        assert model.training and list(stages) == labels == stage_labels(model)
        model.eval()
        with torch.no_grad():
            x = model.stem(images) + (model.pos_embed if model.pos_embed is not None else 0)
            for i, block in enumerate(model.blocks):
                x = block(x)
                assert torch.equal(stages[f"L{i}B1"], x), f"L{i}B1"  # the last stage is the block's forward
            assert torch.equal(model.forward_head(model.norm(stages["L1B1"])), model(images))
        results[model] = stages
    for label in labels:
        torch.testing.assert_close(results[fused][label], results[reference][label], rtol=1e-4, atol=1e-5)
    width = {"gmlp-cifar100": 24}.get(name, 32)  # gMLP's first stage is the gate output: hidden / 2
    assert results[fused]["L0B0"].shape == (3, 16, width) and results[fused]["L0B1"].shape == (3, 16, 32)
    assert list(capture(fused, images, ["L1B0"])) == ["L1B0"]
    with pytest.raises(ValueError, match="valid: \\['L0B0'"):
        capture(fused, images, ["L9B0"])


def test_capture_modules_and_patch_maps():
    reference, fused = model_pair("mixer-cifar100")
    images = torch.randn(2, 3, 16, 16)
    out = capture_modules(reference, images, ["blocks.0.mlp_tokens", "blocks.1"])
    assert out["blocks.0.mlp_tokens"].shape == (2, 32, 16)  # the token MLP acts on (B, dim, patches)
    assert torch.equal(out["blocks.1"], capture(reference, images)["L1B1"])
    assert patch_map(out["blocks.0.mlp_tokens"][0], (4, 4)).shape == (32, 4, 4)
    assert torch.equal(patch_map(out["blocks.1"][0], (4, 4))[:, 1, 2], out["blocks.1"][0, 6])  # patch (1, 2)
    with pytest.raises(ValueError, match="fused op"):
        capture_modules(fused, images, ["blocks.0.mlp_tokens"])
    with pytest.raises(ValueError, match="unknown module"):
        capture_modules(fused, images, ["blocks.7"])
    with pytest.raises(ValueError, match="patches=16"):
        patch_map(torch.randn(10), (4, 4))


# ---- CLI -------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """Uncompressed IDX: magic 0x0801 (labels) / 0x0803 (images), big-endian dims, uint8 payload."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A tiny fused Mixer checkpoint with mnist metadata, and a 60-image synthetic MNIST test split."""
    monkeypatch.setenv("MIXERKERN_DATA", str(tmp_path / "cache"))
    data = tmp_path / "mnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 60)
    images = rng.integers(0, 60, (60, 28, 28))
    for i, k in enumerate(labels):
        images[i, 2 * k:2 * k + 8] += 180
    write_idx(data / "t10k-images-idx3-ubyte", images)
    write_idx(data / "t10k-labels-idx1-ubyte", labels)
    run = tmp_path / "run"
    run.mkdir()
    model = create_model("mixer-cifar100", **{**TINY, "in_chans": 1}, **FAMILIES["mixer-cifar100"])
    save(model, run / "best.safetensors", dataset="mnist", epoch=1,
         preprocess={"mean": [40.0], "std": [60.0], "image_size": 16})
    (run / "run.json").write_text(json.dumps({"run": {"data_dir": str(data)}}))
    return run


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path


def test_cli_cka_writes_heatmap_json_and_csv(run_dir, capsys):
    assert main(["cka", "--checkpoint", str(run_dir), "--kind", "linear", "--samples", "40",
                 "--batch-size", "20"]) == 0
    assert_png(run_dir / "cka-linear.png")
    result = json.loads((run_dir / "cka-linear.json").read_text())
    assert result["labels"] == ["L0B0", "L0B1", "L1B0", "L1B1"] and result["batches"] == 2
    assert result["stages"]["L1B0"] == "blocks.1 token_mixing"
    matrix = np.array(result["matrix"])
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-12)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
    assert ((matrix > 0) & (matrix <= 1 + 1e-12)).all()
    rows = (run_dir / "cka-linear.csv").read_text().splitlines()
    assert rows[0] == ",L0B0,L0B1,L1B0,L1B1" and len(rows) == 5
    out = run_dir / "plots" / "rbf.png"
    assert main(["cka", "--checkpoint", str(run_dir / "best.safetensors"), "--kind", "kernel", "--unbiased",
                 "--samples", "30", "--batch-size", "16", "--out", str(out)]) == 0
    assert_png(out)
    assert json.loads(out.with_suffix(".json").read_text())["unbiased"] is True


@pytest.mark.parametrize("layer,channels", [("L1B1", []), ("blocks.0.mlp_tokens", ["0", "5"])])
def test_cli_activations_writes_image(run_dir, layer, channels):
    assert main(["activations", "--checkpoint", str(run_dir), "--index", "7", "--layer", layer,
                 "--channels", *channels]) == 0
    assert_png(run_dir / f"activations-{layer}-7.png")


@pytest.mark.parametrize("argv,message", [
    (["cka", "--kind", "cosine"], "invalid choice: 'cosine'"),
    (["cka", "--samples", "500"], "--samples 500: the mnist test split has only 60 images"),
    (["cka", "--unbiased", "--samples", "5", "--batch-size", "3"], "at least 4 images"),
    (["activations", "--index", "60", "--layer", "L0B0"], "--index 60: out of range"),
    (["activations", "--index", "0", "--layer", "L7B0"], "valid stage labels: L0B0, L0B1, L1B0, L1B1"),
    (["activations", "--index", "0", "--layer", "head"], "--layer head: activation must be"),
    (["activations", "--index", "0", "--layer", "L0B0", "--channels", "99"], "--channels [99]: out of range"),
])
def test_cli_errors_name_the_argument(run_dir, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv[:1], "--checkpoint", str(run_dir), *argv[1:]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["cka", "--checkpoint", str(tmp_path / "nowhere")])
    assert "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["activations", "--checkpoint", str(tmp_path), "--index", "0", "--layer", "L0B0"])
    assert "no checkpoint in this directory" in capsys.readouterr().err
