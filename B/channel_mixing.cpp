// mixerkern::channel_mixing on CPU. Math: channel_mixing_kernels.h; checks, threading and dtype dispatch:
// mixing_op.cpp; schema, fake kernel and autograd: mixerkern/ops/channel_mixing.py.
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  using mixerkern::cpu::MixingForm;
  using mixerkern::cpu::MixingKind;
  m.impl("channel_mixing", &mixerkern::cpu::mixing_forward_op<MixingKind::Channel>);
  m.impl("channel_mixing_train", &mixerkern::cpu::mixing_forward_op<MixingKind::Channel, MixingForm::Block, true>);
  m.impl("channel_mixing_backward", &mixerkern::cpu::mixing_backward_saved_op<MixingKind::Channel>);
}
// B
