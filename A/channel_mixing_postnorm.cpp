// mixerkern::channel_mixing_postnorm on CPU: the channel-mixing kernel in its post-norm form
// (LN after the residual), FNet's feed-forward sub-layer. Math: channel_mixing_kernels.h; glue:
// mixing_op.cpp; schema, fake kernel and autograd: mixerkern/ops/channel_mixing_postnorm.py.
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  using mixerkern::cpu::MixingForm;
  using mixerkern::cpu::MixingKind;
  m.impl("channel_mixing_postnorm", &mixerkern::cpu::mixing_forward_op<MixingKind::Channel, MixingForm::PostNorm>);
  m.impl("channel_mixing_postnorm_train", &mixerkern::cpu::mixing_forward_op<MixingKind::Channel, MixingForm::PostNorm, true>);
  m.impl("channel_mixing_postnorm_backward",
         &mixerkern::cpu::mixing_backward_saved_op<MixingKind::Channel, MixingForm::PostNorm>);
}
