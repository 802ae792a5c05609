"""Model presets, the fused/reference classifier equivalence, overrides, errors and the FLOP count."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mixerkern import FusedFNetLayer, FusedgMLPLayer, FusedMixerLayer
from mixerkern.models import PRESETS, create_model, flops_per_image, get_preset, list_models
from mixerkern.reference import FNetLayer, MixerLayer, SpatialGatingUnit, gMLPLayer

PAPER = ["mixer-s16", "mixer-b16", "mixer-l16", "gmlp-ti16", "gmlp-s16", "gmlp-b16"]
LAYERS = {"mixer": (MixerLayer, FusedMixerLayer), "gmlp": (gMLPLayer, FusedgMLPLayer),
          "fnet": (FNetLayer, FusedFNetLayer)}  # (reference, fused)
# Odd / non-power-of-two sizes, positional embedding and final norm on, no dropout (so train mode
# is deterministic and fused == reference there too).
TINY = dict(image_size=32, patch_size=8, dim=100, depth=2, token_hidden=37, channel_hidden=50,
            num_classes=7, dropout=0.0, pos_embed=True, final_norm=True)


def build_pair(name: str, **overrides):
    """Reference and fused models with the same weights."""
    torch.manual_seed(0)
    reference = create_model(name, fused=False, **overrides)
    for module in reference.modules():  # timm's near-identity gate init would hide spatial-product errors
        if isinstance(module, SpatialGatingUnit):
            torch.nn.init.normal_(module.proj.weight, std=module.proj.in_features ** -0.5)
    fused = create_model(name, fused=True, **overrides)
    fused.load_state_dict(reference.state_dict(), strict=True)
    return reference, fused


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def mixer_param_count(cfg: dict) -> int:
    p, d, c, k = cfg["patch_size"], cfg["dim"], cfg["in_chans"], cfg["num_classes"]
    patches = (cfg["image_size"] // p) ** 2
    th, ch = cfg["token_hidden"], cfg["channel_hidden"]
    block = 4 * d + (2 * patches * th + th + patches) + (2 * d * ch + ch + d)  # 2 LNs + token + channel MLP
    return (c * p * p * d + d) + cfg["depth"] * block + 2 * d * cfg["final_norm"] + (d * k + k)


def gmlp_param_count(cfg: dict) -> int:
    p, d, c, k, h = cfg["patch_size"], cfg["dim"], cfg["in_chans"], cfg["num_classes"], cfg["hidden"]
    patches = (cfg["image_size"] // p) ** 2
    # LN, fc1 (d -> h), gate LN (h/2), proj (patches x patches), fc2 (h/2 -> d)
    block = 2 * d + (d * h + h) + h + (patches * patches + patches) + (h // 2 * d + d)
    return (c * p * p * d + d) + cfg["depth"] * block + 2 * d * cfg["final_norm"] + (d * k + k)


def fnet_param_count(cfg: dict) -> int:
    p, d, c, k, h = cfg["patch_size"], cfg["dim"], cfg["in_chans"], cfg["num_classes"], cfg["hidden"]
    patches = (cfg["image_size"] // p) ** 2
    block = 4 * d + (d * h + h) + (h * d + d)  # 2 LNs, fc1, fc2: the Fourier mixing has no parameters
    pos = patches * d * cfg["pos_embed"]
    return (c * p * p * d + d) + pos + cfg["depth"] * block + 2 * d * cfg["final_norm"] + (d * k + k)


PARAM_COUNTS = {"mixer": mixer_param_count, "gmlp": gmlp_param_count, "fnet": fnet_param_count}


@pytest.mark.parametrize("name", [n for n in list_models() if "arch" not in PRESETS[n]])  # patchless: own tests
def test_every_preset_builds_fused_and_reference_with_identical_names(name):
    with torch.device("meta"):  # no memory, no init cost: the 224 px presets are never materialized
        reference = create_model(name, fused=False)
        fused = create_model(name, fused=True)
    ref_shapes = {k: v.shape for k, v in reference.state_dict().items()}
    fused_shapes = {k: v.shape for k, v in fused.state_dict().items()}
    assert ref_shapes == fused_shapes
    assert len(reference.blocks) == len(fused.blocks) == PRESETS[name]["depth"]
    ref_layer, fused_layer = LAYERS[PRESETS[name]["block"]]
    assert all(type(b) is ref_layer for b in reference.blocks)
    assert all(type(b) is fused_layer for b in fused.blocks)
    assert sum(p.numel() for p in reference.parameters()) == PARAM_COUNTS[PRESETS[name]["block"]](PRESETS[name])
    assert reference.config == fused.config == {"name": name, **PRESETS[name]}


def test_paper_preset_sizes_match_published_counts():
    # timm's mixer_{s,b,l}16_224 and gmlp_{ti,s,b}16_224 parameter counts (millions), an independent
    # check of the presets (the gMLP paper rounds them to 6, 20 and 73 M).
    published = {"mixer-s16": 18.53, "mixer-b16": 59.88, "mixer-l16": 208.20,
                 "gmlp-ti16": 5.87, "gmlp-s16": 19.42, "gmlp-b16": 73.08}
    for name in PAPER:
        with torch.device("meta"):
            count = sum(p.numel() for p in create_model(name, fused=False).parameters())
        assert round(count / 1e6, 2) == published[name], name


def test_block_parameter_names_follow_timm():
    model = create_model("mixer-cifar100", depth=1, fused=True)
    names = {k for k, _ in model.blocks[0].named_parameters()}
    expected = {f"{m}.{p}" for m in ("norm1", "mlp_tokens.fc1", "mlp_tokens.fc2", "norm2",
                                     "mlp_channels.fc1", "mlp_channels.fc2") for p in ("weight", "bias")}
    assert names == expected
    top = {k.split(".")[0] for k, _ in create_model("mixer-s16", fused=False, depth=1, image_size=32,
                                                    patch_size=16).named_parameters()}
    assert top == {"stem", "blocks", "norm", "head"}


FNET_TINY = dict(image_size=32, patch_size=8, dim=100, depth=2, hidden=37, num_classes=7, dropout=0.0,
                 pos_embed=True, final_norm=True)
GMLP_TINY = dict(image_size=32, patch_size=8, dim=100, depth=2, hidden=74, num_classes=7, dropout=0.0,
                 pos_embed=True, final_norm=True)


@pytest.mark.parametrize("name, overrides, train", [
    ("mixer-cifar100", {}, False),  # dropout 0.2: fused and torch dropout masks differ, compare in eval
    ("mixer-cifar100", TINY, True),
    ("gmlp-cifar100", {}, False),
    ("gmlp-cifar100", GMLP_TINY, True),
    ("fnet-cifar100", {}, False),
    ("fnet-cifar100", FNET_TINY, True),
])
def test_fused_model_matches_reference(name, overrides, train):
    reference, fused = build_pair(name, **overrides)
    reference.train(train), fused.train(train)
    cfg = reference.config
    torch.manual_seed(1)
    x = torch.randn(3, cfg["in_chans"], cfg["image_size"], cfg["image_size"])
    probe = torch.randn(3, cfg["num_classes"])  # random cotangent: every logit contributes to the grads
    ref_out, fused_out = reference(x), fused(x)
    assert rel_err(fused_out, ref_out) <= 1e-5
    (ref_out * probe).sum().backward()
    (fused_out * probe).sum().backward()
    ref_grads = {k: p.grad for k, p in reference.named_parameters()}
    scale = max(g.abs().max() for g in ref_grads.values())
    for pname, param in fused.named_parameters():
        ref_grad = ref_grads[pname]
        # Under a final LayerNorm the token-MLP fc2 bias (a per-patch constant added to every channel)
        # is removed by every later LN, so its gradient is exactly 0 up to rounding: such gradients
        # are compared relative to the model's largest gradient instead of their own.
        structural_zero = cfg["final_norm"] and pname.endswith("mlp_tokens.fc2.bias")
        assert param.grad is not None and (structural_zero or ref_grad.abs().max() > 1e-6 * scale), pname
        denominator = 1e-2 * scale if structural_zero else ref_grad.abs().max()
        assert (param.grad - ref_grad).abs().max() <= 1e-4 * denominator, pname


def test_classifier_forward_matches_hand_written_pipeline():
    torch.manual_seed(5)
    model = create_model("mixer-cifar100", fused=False, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    p, d = TINY["patch_size"], TINY["dim"]
    # Keras-style patch extraction: (B, C, H, W) -> (B, P, C*p*p) in row-major patch order, then a Dense.
    patches = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(2, -1, 3 * p * p)
    tokens = patches @ model.stem.proj.weight.reshape(d, -1).T + model.stem.proj.bias + model.pos_embed
    for block in model.blocks:
        tokens = block(tokens)
    tokens = torch.nn.functional.layer_norm(tokens, (d,), model.norm.weight, model.norm.bias, eps=1e-6)
    expected = tokens.mean(dim=1) @ model.head.weight.T + model.head.bias
    assert rel_err(model(x), expected) <= 1e-5


@pytest.mark.parametrize("patch_size", [7, 4])
def test_overrides_change_the_architecture(patch_size):
    torch.manual_seed(2)
    model = create_model("mixer-cifar100", in_chans=1, num_classes=10, image_size=28, patch_size=patch_size)
    assert model.num_patches == (28 // patch_size) ** 2
    assert model.blocks[0].num_patches == model.num_patches
    assert model.config["in_chans"] == 1 and model.config["image_size"] == 28
    logits = model.eval()(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_dropout_override_reaches_head_and_blocks():
    model = create_model("mixer-cifar100", dropout=0.1)
    assert model.head_drop.p == 0.1 and all(b.dropout == 0.1 for b in model.blocks)
    model = create_model("mixer-cifar100", block_dropout=0.0)
    assert model.head_drop.p == PRESETS["mixer-cifar100"]["dropout"]
    assert all(b.dropout == 0.0 for b in model.blocks)


def test_config_is_json_and_rebuilds_the_model():
    model = create_model("mixer-cifar100", fused=False, **TINY)
    config = json.loads(json.dumps(model.config))
    rebuilt = create_model(**config, fused=False)
    assert rebuilt.config == model.config
    assert rebuilt.load_state_dict(model.state_dict(), strict=True) is not None
    assert get_preset("mixer-cifar100") == PRESETS["mixer-cifar100"]  # presets were not mutated


def test_bad_names_and_overrides_raise_clear_errors():
    with pytest.raises(ValueError, match=r"unknown model 'mixer-x'.*available.*mixer-cifar100"):
        create_model("mixer-x")
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['widht'\].*valid.*image_size"):
        create_model("mixer-cifar100", widht=3)
    with pytest.raises(ValueError, match=r"image_size 30x30 is not divisible by patch_size 8"):
        create_model("mixer-cifar100", image_size=30)
    with pytest.raises(ValueError, match=r"unknown block family 'gmlp-x'.*available.*mixer"):
        create_model("mixer-cifar100", block="gmlp-x")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        create_model("mixer-cifar100", dropout=1.0)


@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 1, 64, 64), (2, 3, 32, 32), (2, 3, 64, 64, 1)])
def test_bad_inputs_raise_clear_errors(shape):
    model = create_model("mixer-cifar100", depth=1)
    torch.manual_seed(3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, in_chans, height, width\) = \(B, 3, 64, 64\)"):
        model(torch.randn(shape))


def test_flops_per_image_matches_hand_count_and_flop_counter():
    cfg = PRESETS["mixer-cifar100"]
    p, d = cfg["patch_size"], cfg["dim"]
    patches = (cfg["image_size"] // p) ** 2
    stem = 2 * patches * d * (cfg["in_chans"] * p * p)
    token_mlp = 2 * (2 * d * patches * cfg["token_hidden"])  # fc1 and fc2, for each of the d channels
    channel_mlp = 2 * (2 * patches * d * cfg["channel_hidden"])  # fc1 and fc2, for each patch
    head = 2 * d * cfg["num_classes"]
    expected = stem + cfg["depth"] * (token_mlp + channel_mlp) + head
    model = create_model("mixer-cifar100", fused=False).eval()
    assert flops_per_image("mixer-cifar100") == flops_per_image(model) == expected
    # torch's own counter sees only conv/matmul ops of the reference model: the same quantity.
    torch.manual_seed(4)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 64, 64))
    assert counter.get_total_flops() == expected


def test_fnet_flops_count_the_ffn_and_the_fft():
    cfg = PRESETS["fnet-cifar100"]
    p, d = cfg["patch_size"], cfg["dim"]
    patches = (cfg["image_size"] // p) ** 2
    fft = round(2.5 * patches * d * math.log2(patches * d))  # the customary FFT count for N = P * D points
    block = 2 * (2 * patches * d * cfg["hidden"]) + fft
    expected = 2 * patches * d * 3 * p * p + cfg["depth"] * block + 2 * d * cfg["num_classes"]
    assert flops_per_image("fnet-cifar100") == expected


def test_flops_per_image_of_paper_presets_matches_flop_counter():
    for name in PAPER:
        with torch.device("meta"):
            model = create_model(name, fused=False)
            x = torch.randn(1, 3, 224, 224)
        with FlopCounterMode(display=False) as counter:
            model(x)
        assert flops_per_image(name) == counter.get_total_flops(), name
    with pytest.raises(TypeError, match="overrides are only accepted with a model name"):
        flops_per_image(model, depth=2)
