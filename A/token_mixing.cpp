// mixerkern::token_mixing on CPU. Math: token_mixing_kernels.h; checks, threading and dtype dispatch:
// mixing_op.cpp; schema, fake kernel and autograd: mixerkern/ops/token_mixing.py.
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  using mixerkern::cpu::MixingKind;
  m.impl("token_mixing", &mixerkern::cpu::mixing_forward_op<MixingKind::Token>);
  m.impl("token_mixing_backward", &mixerkern::cpu::mixing_backward_op<MixingKind::Token>);
}
