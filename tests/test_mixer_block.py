import pytest
import torch

from mixerkern import FusedMixerLayer
from mixerkern.layers import mixer as fused_mixer_module
from mixerkern.ops import channel_mixing, mixer_block, token_mixing
from op_checks import assert_error_budget, make_block_inputs
from op_suite import FusedOpSuite


class TestMixerBlock(FusedOpSuite):
    op = mixer_block
    # (batch, num_patches, dim, token_hidden, channel_hidden): the seed's shape, 196 patches with
    # dim 100 (channel row blocks of 64 straddle images), odd and degenerate sizes.
    shapes = [(3, 196, 100, 37, 50), (4, 64, 256, 64, 64), (2, 7, 17, 5, 9), (1, 1, 3, 1, 2), (5, 65, 33, 130, 20)]
    small_shape = (2, 5, 6, 3, 4)

    def inputs(self, shape, dtype=torch.float32):
        return make_block_inputs(*shape, dtype=dtype)

    def bad_shape_cases(self, x, params):
        return [((x, *params[:2], params[2][:, :-1], *params[3:]), r"token_fc1_weight must have shape"),
                ((x, *params[:8], params[8][:, :-1], *params[9:]), r"channel_fc1_weight must have shape"),
                ((x, *params[:6], params[6][:-1], *params[7:]), r"channel_ln_weight must have shape")]

    @pytest.mark.parametrize("threads", [1, 2])
    def test_same_bits_as_the_two_ops(self, threads):
        """Image by image and in place, the block computes each row exactly as the two ops do, also
        when threads split the batch mid channel row block."""
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for shape in self.shapes:
                x, params = self.inputs(shape)
                two_ops = channel_mixing(token_mixing(x, *params[:6]), *params[6:])
                assert torch.equal(self.op(x, *params), two_ops)
        finally:
            torch.set_num_threads(previous)

    def test_bf16_error_budget_tanh(self):
        x, params = self.inputs(self.shapes[1], torch.float64)
        assert_error_budget(self.op, x, params, "tanh")

    def test_has_no_dropout(self):
        x, params = self.inputs(self.small_shape)
        with pytest.raises(TypeError, match=r"has no dropout"):
            self.op(x, *params, dropout_p=0.1)


def test_layer_runs_the_block_op_only_when_autograd_does_not_record(monkeypatch):
    calls = []
    monkeypatch.setattr(fused_mixer_module, "mixer_block", lambda *a, **k: calls.append(1) or mixer_block(*a, **k))
    layer = FusedMixerLayer(num_patches=9, dim=12, dropout=0.3)
    x = torch.randn(2, 9, 12)
    two_ops = layer.eval().forward_stages(x)[-1]
    with torch.no_grad():
        assert torch.equal(layer(x), two_ops) and len(calls) == 1
        layer.train()
        layer(x)  # dropout active: the two ops
        assert len(calls) == 1
    layer.eval()
    out = layer(x)  # parameters require grad: autograd records, the two ops save for backward
    assert len(calls) == 1 and out.requires_grad and torch.equal(out, two_ops)
