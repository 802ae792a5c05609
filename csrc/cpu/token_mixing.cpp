// mixerkern::token_mixing on CPU. Math: token_mixing_kernels.h; schema, fake kernel and autograd:
// mixerkern/ops/token_mixing.py.
#include <torch/library.h>

#include "mixing_op.h"

namespace mixerkern { namespace cpu {
namespace {

at::Tensor forward(const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b, const at::Tensor& w1,
                   const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, double eps,
                   c10::string_view approximate, double p, const std::optional<at::Tensor>& seed) {
  return mixing_forward(MixingKind::Token, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed);
}

MixingGrads backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b,
                     const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                     double eps, c10::string_view approximate, double p, const std::optional<at::Tensor>& seed) {
  return mixing_backward(MixingKind::Token, g, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed);
}

}  // namespace

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  m.impl("token_mixing", &forward);
  m.impl("token_mixing_backward", &backward);
}

}}  // namespace mixerkern::cpu
