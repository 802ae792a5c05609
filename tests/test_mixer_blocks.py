import contextlib

import pytest
import torch

import mixerkern
from conftest import bf16_isas, cpu_isa
from mixerkern import FusedMixerLayer
from mixerkern.layers import BlockSequence
from mixerkern.layers import mixer as fused_mixer_module
from mixerkern.ops import channel_mixing, mixer_blocks, token_mixing
from mixerkern.reference import MixerLayer
from op_checks import (FP32_FWD_RTOL, assert_close_to_reference, assert_error_budget, make_block_inputs, rel_err,
                       run_with_grads)
from op_suite import FusedOpSuite


class TestMixerBlocks(FusedOpSuite):
    """The suite's cases are one block; test_several_blocks and the bit-identity test cover stacks."""
    op = mixer_blocks
    # (batch, num_patches, dim, token_hidden, channel_hidden): the seed's shape, 196 patches with
    # dim 100 (an image's rows end mid channel row block of 64), odd and degenerate sizes.
    shapes = [(3, 196, 100, 37, 50), (4, 64, 256, 64, 64), (2, 7, 17, 5, 9), (1, 1, 3, 1, 2), (5, 65, 33, 130, 20)]
    small_shape = (2, 5, 6, 3, 4)

    def inputs(self, shape, dtype=torch.float32, depth=1):
        return make_block_inputs(*shape, dtype=dtype, depth=depth)

    def bad_shape_cases(self, x, params):
        return [((x, *params[:2], params[2][:, :-1], *params[3:]), r"block 0 token_fc1_weight must have shape"),
                ((x, *params[:8], params[8][:, :-1], *params[9:]), r"block 0 channel_fc1_weight must have shape"),
                ((x, *params[:6], params[6][:-1], *params[7:]), r"block 0 channel_ln_weight must have shape"),
                ((x, *params, *params[:2], params[2][:, :-1], *params[3:]), r"block 1 token_fc1_weight must have")]

    def test_opcheck(self):
        """On the registered op itself, which takes the parameters as one Tensor[]."""
        for dtype in (torch.float32, torch.bfloat16):
            for depth in (1, 2):
                x, params = self.inputs(self.small_shape, dtype, depth)
                leaves = [t.requires_grad_() for t in (x, *params)]
                torch.library.opcheck(self.op.registered, (leaves[0], leaves[1:], 1e-6, "none"))

    @pytest.mark.parametrize("shape", [(3, 196, 100, 37, 50), (2, 7, 17, 5, 9)])
    def test_several_blocks(self, shape):
        x, params = self.inputs(shape, depth=3)
        assert_close_to_reference(self.op, x, params)

    @pytest.mark.parametrize("threads", [1, 2])
    def test_same_bits_as_the_two_ops(self, threads):
        """Image by image and in place, the blocks compute each row exactly as the two ops do, one
        block after the other, also when threads split the batch."""
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for shape in self.shapes:
                for depth in (1, 3):
                    x, params = self.inputs(shape, depth=depth)
                    y = x
                    for i in range(0, len(params), 12):
                        y = channel_mixing(token_mixing(y, *params[i:i + 6]), *params[i + 6:i + 12])
                    assert torch.equal(self.op(x, *params), y)
        finally:
            torch.set_num_threads(previous)

    def test_compiled_op_checks_the_parameter_count(self):
        if mixerkern.cpu_isa() == "none":
            pytest.skip("compiled kernels not loaded")
        x, params = self.inputs(self.small_shape)
        with pytest.raises(RuntimeError, match=r"params must hold 12 tensors per block"):
            self.op.registered(x, params[:11], 1e-6, "none")
        with pytest.raises(TypeError, match=r"12 parameters per block"):
            self.op(x, *params, params[0])

    def test_kernel_matches_reference(self):
        """The suite's reference checks differentiate, so the public entry runs the per-block ops;
        here the image-by-image kernel itself (no autograd) is held to the fp32 tolerance."""
        for shape in self.shapes:
            for depth in (1, 3):
                x, params = self.inputs(shape, depth=depth)
                with torch.no_grad():
                    out = self.op(x, *params)
                assert rel_err(out, self.op.reference(x, *params)) <= FP32_FWD_RTOL

    @pytest.mark.parametrize("isa", bf16_isas() or ["fallback"])
    @pytest.mark.parametrize("approximate", ["none", "tanh"])
    def test_registered_op_bf16_error_budget(self, approximate, isa):
        """The registered op in bf16: the kernel's forward and the backward that recomputes."""
        x, params = self.inputs(self.shapes[1], torch.float64, depth=2)
        run = lambda x, p, g, a: run_with_grads(lambda *t: self.op.forward_op(*t, 1e-6, a), x, p, g)  # noqa: E731
        with contextlib.nullcontext() if isa == "fallback" else cpu_isa(isa):
            assert_error_budget(self.op, x, params, approximate, run=run)

    def test_bf16_error_budget_tanh(self):
        x, params = self.inputs(self.shapes[1], torch.float64)
        assert_error_budget(self.op, x, params, "tanh")

    def test_has_no_dropout(self):
        x, params = self.inputs(self.small_shape)
        with pytest.raises(TypeError, match=r"has no dropout"):
            self.op(x, *params, dropout_p=0.1)


def test_kernel_runs_only_when_autograd_does_not_record(monkeypatch):
    """The layer calls mixer_blocks unless dropout is active; mixer_blocks runs its kernel at
    inference and the two ops (which save for their backward) when autograd records."""
    kernel, registered = [], mixer_blocks.registered
    monkeypatch.setattr(mixer_blocks, "registered", lambda *a: kernel.append(1) or registered(*a))
    layer = FusedMixerLayer(num_patches=9, dim=12, dropout=0.3)
    x = torch.randn(2, 9, 12)
    two_ops = layer.eval().forward_stages(x)[-1]
    with torch.no_grad():
        assert torch.equal(layer(x), two_ops) and kernel == [1]
        layer.train()
        layer(x)  # dropout active: the two ops
        assert kernel == [1]
    layer.eval()
    out = layer(x)  # parameters require grad: autograd records
    assert kernel == [1] and out.requires_grad and torch.equal(out, two_ops)
    assert "channel_mixing_train" in out.grad_fn.name()


def test_block_sequence_runs_consecutive_fused_layers_as_one_call(monkeypatch):
    calls = []
    monkeypatch.setattr(fused_mixer_module, "mixer_blocks", lambda *a, **k: calls.append(len(a)) or mixer_blocks(*a, **k))
    torch.manual_seed(0)
    layers = [FusedMixerLayer(9, 12), FusedMixerLayer(9, 12), MixerLayer(9, 12), FusedMixerLayer(9, 12),
              FusedMixerLayer(9, 12, approximate="tanh"), FusedMixerLayer(9, 12, approximate="tanh")]
    seq = BlockSequence(*layers).eval()
    x = torch.randn(2, 9, 12)
    expected = x
    for layer in layers:
        expected = layer(expected)
    calls.clear()
    with torch.no_grad():
        assert torch.equal(seq(x), expected)
    # Fused runs of equal settings: 2 layers, then (reference layer) 1, then 2 tanh layers.
    assert calls == [1 + 24, 1 + 12, 1 + 24]
    assert list(seq.state_dict()) == list(torch.nn.Sequential(*layers).state_dict())

    hooked = []  # a layer with a forward hook runs on its own, and the hook sees its output
    seq[1].register_forward_hook(lambda module, args, out: hooked.append(out))
    calls.clear()
    with torch.no_grad():
        assert torch.equal(seq(x), expected)
    assert calls == [1 + 12, 1 + 12, 1 + 12, 1 + 24] and len(hooked) == 1
