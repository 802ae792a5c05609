// Torch glue shared by the token- and channel-mixing CPU ops: argument checks, parameter layout,
// dtype dispatch, the parallel split, and the reduction of per-thread weight gradients.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace mixerkern { namespace cpu {

enum class MixingKind { Token, Channel };

using MixingGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

at::Tensor mixing_forward(MixingKind kind, const at::Tensor& x, const at::Tensor& ln_weight, const at::Tensor& ln_bias,
                          const at::Tensor& fc1_weight, const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                          const at::Tensor& fc2_bias, double eps, c10::string_view approximate, double dropout_p,
                          const std::optional<at::Tensor>& seed);

MixingGrads mixing_backward(MixingKind kind, const at::Tensor& grad_out, const at::Tensor& x,
                            const at::Tensor& ln_weight, const at::Tensor& ln_bias, const at::Tensor& fc1_weight,
                            const at::Tensor& fc1_bias, const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                            double eps, c10::string_view approximate, double dropout_p,
                            const std::optional<at::Tensor>& seed);

// The op-schema signatures (mixerkern/ops/_mixing.py), bound to one kind: what <op>.cpp registers.
template <MixingKind K>
at::Tensor mixing_forward_op(const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b, const at::Tensor& w1,
                             const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, double eps,
                             c10::string_view approximate, double p, const std::optional<at::Tensor>& seed) {
  return mixing_forward(K, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed);
}

template <MixingKind K>
MixingGrads mixing_backward_op(const at::Tensor& g, const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b,
                               const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                               double eps, c10::string_view approximate, double p,
                               const std::optional<at::Tensor>& seed) {
  return mixing_backward(K, g, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed);
}

}}  // namespace mixerkern::cpu
