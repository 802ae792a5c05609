"""FusedFNetLayer against the reference FNetLayer: weights, forward/backward, compile, autocast, ONNX."""
import functools

import pytest
import torch

from layer_checks import (assert_autocast_bf16, assert_compiles_fullgraph, assert_dropout_seeded,
                          assert_forward_backward_match, assert_state_dict_round_trip)
from layer_checks import pair as _pair
from mixerkern import FusedFNetLayer
from mixerkern.models import create_model
from mixerkern.reference import FNetLayer
from op_checks import rel_err

pair = functools.partial(_pair, FNetLayer, FusedFNetLayer)


@pytest.mark.parametrize("cfg, tokens", [(dict(dim=100, hidden=37), 196),
                                         (dict(dim=256, hidden=256, approximate="tanh", eps=1e-5), 64),
                                         (dict(dim=33, hidden=20), 1)])
def test_layer_forward_backward_match_reference(cfg, tokens):
    ref, fused = pair(**cfg)
    assert_forward_backward_match(ref, fused, torch.randn(3, tokens, cfg["dim"]))


def test_state_dict_round_trip_and_names():
    ref, fused = pair(dim=24)
    assert {k.rsplit(".", 1)[0] for k in fused.state_dict()} == {"norm1", "mlp.fc1", "mlp.fc2", "norm2"}
    assert ref.hidden == 96  # default: 4 * dim
    assert_state_dict_round_trip(FNetLayer, fused, torch.randn(2, 16, 24))


def test_compile_fullgraph_no_graph_break():
    ref, fused = pair(dim=40, hidden=60, dropout=0.1)
    assert_compiles_fullgraph(ref, fused, torch.randn(2, 49, 40))


def test_autocast_bf16_layer_at_196_tokens():
    # Under autocast the Fourier mixing stays in float32 (like torch.fft in the reference), and so
    # does the post-norm feed-forward sub-layer (its output is LN2's, float32 under autocast): the
    # residual stream and the output are float32, with or without autograd recording.
    ref, fused = pair(dim=64, hidden=128)
    x = torch.randn(2, 196, 64)
    assert_autocast_bf16(ref, fused, x, torch.float32)
    with torch.no_grad():
        assert_autocast_bf16(ref, fused, x, torch.float32)


def test_feed_forward_runs_the_postnorm_op(monkeypatch):
    """The feed-forward sub-layer is one channel_mixing_postnorm call, with or without autograd; when
    autograd records, the call goes through the op's training forward, which saves activations."""
    import mixerkern.layers.fnet as fnet
    from mixerkern.ops import channel_mixing_postnorm as op
    calls, train_calls, train_op = [], [], op.train_op
    monkeypatch.setattr(fnet, "channel_mixing_postnorm", lambda *a, **k: calls.append(1) or op(*a, **k))
    monkeypatch.setattr(op, "train_op", lambda *a: train_calls.append(1) or train_op(*a))
    ref, fused = pair(dim=100, hidden=37)
    x = torch.randn(3, 196, 100)
    with torch.no_grad():
        assert rel_err(fused(x), ref(x)) <= 1e-5
    assert calls == [1] and train_calls == []
    fused(x).sum().backward()  # parameters require grad: autograd records
    assert calls == [1, 1] and train_calls == [1]


def test_dropout_uses_layer_seed_and_eval_disables_it():
    _, fused = pair(dim=32, hidden=64, dropout=0.5)
    assert_dropout_seeded(fused, torch.randn(4, 16, 32))


def test_bad_input_is_a_clear_error():
    _, fused = pair(dim=32)
    with pytest.raises(ValueError, match=r"x must have shape \(B, tokens, dim=32\)"):
        fused(torch.randn(2, 16, 31))


def test_onnx_export_runs_in_onnxruntime():
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("fnet-cifar100", depth=2, image_size=32, dim=48, hidden=40).eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.onnx.export(model, (x,), dynamo=True)
    assert not [n for n in program.model.graph if n.domain not in ("", "ai.onnx")]  # standard ops only
    path = program.model_proto.SerializeToString()
    session = ort.InferenceSession(path)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert rel_err(torch.from_numpy(out), model(x)) <= 1e-5
