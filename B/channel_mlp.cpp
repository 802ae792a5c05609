// mixerkern::channel_mlp on CPU: the channel-mixing kernel in its bare form (no LayerNorm, no residual).
// Math: channel_mixing_kernels.h; glue: mixing_op.cpp; schema and autograd: mixerkern/ops/channel_mlp.py.
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  using mixerkern::cpu::MixingKind;
  m.impl("channel_mlp", &mixerkern::cpu::mlp_forward_op<MixingKind::Channel>);
  m.impl("channel_mlp_train", &mixerkern::cpu::mlp_forward_op<MixingKind::Channel, true>);
  m.impl("channel_mlp_backward", &mixerkern::cpu::mlp_backward_saved_op<MixingKind::Channel>);
}
// B
