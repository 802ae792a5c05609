import contextlib

import pytest
import torch

import mixerkern
from conftest import bf16_isas, cpu_isa
from mixerkern.layers import mixer as fused_mixer_module
from mixerkern.models import create_model
from mixerkern.ops import mixer_blocks, mixer_features
from op_checks import FP32_FWD_RTOL, FP32_GRAD_RTOL, make_block_inputs, make_patch_inputs, rel_err, run_with_grads

# (batch, chans, height, width, patch, dim, depth, token_hidden, channel_hidden, final norm): odd
# sizes (16 and 196 patches, dim 100 and 20), the seed's shapes, and no blocks at all.
SHAPES = [(3, 3, 28, 28, 7, 100, 2, 37, 50, True), (2, 3, 56, 56, 4, 20, 1, 5, 7, True),
          (4, 3, 64, 64, 8, 256, 4, 64, 64, False), (2, 1, 6, 9, 3, 12, 0, 1, 1, True)]
SMALL = (2, 2, 4, 6, 2, 6, 2, 3, 4, True)


def inputs(batch, chans, height, width, patch, dim, depth, token_hidden, channel_hidden, norm, dtype=torch.float32):
    """Fresh random (images, [stem_weight, stem_bias, *block params], norm (weight, bias) or ())."""
    images, stem = make_patch_inputs(batch, chans, height, width, patch, dim, torch.float64)
    patches = (height // patch) * (width // patch)
    blocks = make_block_inputs(batch, patches, dim, token_hidden, channel_hidden, torch.float64, depth)[1] if depth else []
    norm_params = [1 + 0.3 * torch.randn(dim, dtype=torch.float64), 0.2 * torch.randn(dim, dtype=torch.float64)]
    cast = lambda ts: [t.to(dtype) for t in ts]  # noqa: E731
    return images.to(dtype), cast(stem + blocks), cast(norm_params) if norm else []


def call_registered(images, params, norm, eps=1e-6, approximate="none"):
    weight, bias, *blocks = params
    return mixer_features.registered(images, weight, bias, blocks, *(norm or (None, None)), eps, approximate)


def reference(images, params, norm, eps=1e-6, approximate="none"):
    return mixer_features.reference(images, *params, norm_weight=norm[0] if norm else None,
                                    norm_bias=norm[1] if norm else None, eps=eps, approximate=approximate)


@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_reference(shape):
    images, params, norm = inputs(*shape)
    with torch.no_grad():
        out = mixer_features(images, *params, norm_weight=norm[0] if norm else None,
                             norm_bias=norm[1] if norm else None)
    ref = reference(images, params, norm)
    assert out.shape == ref.shape == (shape[0], shape[5])
    assert rel_err(out, ref) <= FP32_FWD_RTOL


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_gradients_match_reference(shape):
    """The registered op's backward (composed of the ops' kernels) and the entry point's autograd
    path (the ops one by one), against the reference, for every input including the images."""
    images, params, norm = inputs(*shape)
    grad_out = torch.randn(shape[0], shape[5])
    n = 1 + len(params)
    split = lambda t: (t[0], t[1:n], t[n:])  # noqa: E731
    ref_out, ref_grads = run_with_grads(lambda *t: reference(*split(t)), images, [*params, *norm], grad_out)
    entry = lambda *t: mixer_features(t[0], *t[1:n], norm_weight=t[n] if norm else None,  # noqa: E731
                                      norm_bias=t[n + 1] if norm else None)
    for fn in (lambda *t: call_registered(*split(t)), entry):
        out, grads = run_with_grads(fn, images, [*params, *norm], grad_out)
        assert rel_err(out, ref_out) <= FP32_FWD_RTOL
        for g, rg in zip(grads, ref_grads):
            assert (g - rg).norm() <= FP32_GRAD_RTOL * rg.norm() + 1e-6


@pytest.mark.parametrize("isa", bf16_isas() or ["fallback"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_bf16_error_budget(approximate, isa):
    """The kernel in bf16 against a float64 truth: at most 2x the reference's own bf16 error."""
    images, params, norm = inputs(*SHAPES[0], dtype=torch.float64)
    truth = reference(images, params, norm, approximate=approximate)
    low = lambda ts: [t.bfloat16() for t in ts]  # noqa: E731
    with torch.no_grad(), contextlib.nullcontext() if isa == "fallback" else cpu_isa(isa):
        out = call_registered(images.bfloat16(), low(params), low(norm), approximate=approximate)
    ref = reference(images.bfloat16(), low(params), low(norm), approximate=approximate)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, truth) <= 2 * rel_err(ref, truth)


def test_gradcheck_float64():
    images, params, norm = inputs(*SMALL, dtype=torch.float64)
    n = 1 + len(params)
    leaves = [t.clone().requires_grad_() for t in (images, *params, *norm)]
    assert torch.autograd.gradcheck(lambda *t: call_registered(t[0], t[1:n], t[n:]), leaves, eps=1e-6, atol=1e-6,
                                    rtol=1e-5)


def test_opcheck():
    for dtype in (torch.float32, torch.bfloat16):
        for norm_on in (True, False):
            images, params, norm = inputs(*SMALL[:-1], norm_on, dtype=dtype)
            images.requires_grad_()
            params = [p.requires_grad_() for p in params]
            args = (images, params[0], params[1], params[2:], *(norm or (None, None)), 1e-6, "none")
            torch.library.opcheck(mixer_features.registered, args)


def test_batch_zero():
    images, params, norm = inputs(*SMALL)
    with torch.no_grad():
        out = mixer_features(images[:0], *params, norm_weight=norm[0], norm_bias=norm[1])
    assert out.shape == (0, SMALL[5])


def test_bad_input_errors_name_the_argument():
    images, params, norm = inputs(*SMALL)
    with pytest.raises(ValueError, match=r"stem_weight must have shape"):
        mixer_features(images, params[0][:, :1], *params[1:])
    with pytest.raises(ValueError, match=r"block 1 channel_fc1_weight must have shape"):
        mixer_features(images, *params[:22], params[22][:, :-1], *params[23:])
    with pytest.raises(TypeError, match=r"12 block parameters per block"):
        mixer_features(images, *params[:-1])
    with pytest.raises(TypeError, match=r"norm_weight and norm_bias go together"):
        mixer_features(images, *params, norm_weight=norm[0])
    with pytest.raises(ValueError, match=r"norm_bias must have shape \(6,\)"):
        mixer_features(images, *params, norm_weight=norm[0], norm_bias=norm[1][:-1])
    with pytest.raises(TypeError, match=r"norm_weight must have the images' dtype"):
        mixer_features(images, *params, norm_weight=norm[0].double(), norm_bias=norm[1])
    if mixerkern.cpu_isa() != "none":  # the C++ kernel repeats the checks for direct callers
        with pytest.raises(RuntimeError, match=r"norm_weight must have shape \(6,\)"):
            call_registered(images, params, [norm[0][:-1], norm[1]])
        with pytest.raises(RuntimeError, match=r"params must hold 12 tensors per block"):
            call_registered(images, params[:-1], norm)
        with pytest.raises(RuntimeError, match=r"stem_bias must have shape"):
            call_registered(images, [params[0], params[1][:-1], *params[2:]], norm)


def test_classifier_inference_is_one_call(monkeypatch):
    """The fused classifier's inference forward is one mixer_features call; with a hook on a block
    it runs the pieces (and the block sequence), and training runs the per-layer ops."""
    calls = []
    original = mixer_features.registered
    monkeypatch.setattr(mixer_features, "registered", lambda *a: calls.append("features") or original(*a))
    monkeypatch.setattr(fused_mixer_module, "mixer_blocks", lambda *a, **k: calls.append(len(a)) or mixer_blocks(*a, **k))
    for final_norm in (False, True):
        model = create_model("mixer-cifar100", image_size=32, depth=3, final_norm=final_norm).eval()
        images = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            out = model(images)
            pieces = model.forward_head(model.forward_features(images))
        assert calls == ["features", 1 + 36] and rel_err(out, pieces) < 1e-6
        calls.clear()
        hooked = []
        handle = model.blocks[1].register_forward_hook(lambda module, args, out: hooked.append(out))
        with torch.no_grad():
            assert rel_err(model(images), pieces) < 1e-6
        assert calls == [1 + 12, 1 + 12, 1 + 12] and len(hooked) == 1
        handle.remove()
        calls.clear()
    model.train()
    model(images).sum().backward()  # dropout active: the per-layer ops, with gradients
    assert calls == [] and model.stem.proj.weight.grad is not None
