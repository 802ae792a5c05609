// mixerkern::token_mlp on CPU: the token-mixing kernel in its bare form (no LayerNorm, no residual).
// Math: token_mixing_kernels.h; glue: mixing_op.cpp; schema and autograd: mixerkern/ops/token_mlp.py.
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  using mixerkern::cpu::MixingKind;
  m.impl("token_mlp", &mixerkern::cpu::mlp_forward_op<MixingKind::Token>);
  m.impl("token_mlp_backward", &mixerkern::cpu::mlp_backward_op<MixingKind::Token>);
}
