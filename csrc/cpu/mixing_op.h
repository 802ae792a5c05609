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

}}  // namespace mixerkern::cpu
