// Torch glue shared by the token- and channel-mixing CPU ops: argument checks, parameter layout,
// dtype dispatch, the parallel split, and the reduction of per-thread weight gradients.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "mixing_params.h"

namespace mixerkern { namespace cpu {

enum class MixingKind { Token, Channel };  // the MLP mixes the patch axis or the channel axis

using MixingGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// save: also return what the backward would otherwise recompute (mixing_params.h), else an empty tensor.
std::tuple<at::Tensor, at::Tensor> mixing_forward(MixingKind kind, MixingForm form, bool save, const at::Tensor& x,
                                                  const at::Tensor& ln_weight, const at::Tensor& ln_bias,
                                                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                                                  c10::string_view approximate, double dropout_p,
                                                  const std::optional<at::Tensor>& seed);

// saved: the forward's saved activations, or none/empty to recompute them.
MixingGrads mixing_backward(MixingKind kind, MixingForm form, const at::Tensor& grad_out, const at::Tensor& x,
                            const at::Tensor& ln_weight, const at::Tensor& ln_bias, const at::Tensor& fc1_weight,
                            const at::Tensor& fc1_bias, const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                            double eps, c10::string_view approximate, double dropout_p,
                            const std::optional<at::Tensor>& seed, const std::optional<at::Tensor>& saved);

// mixer_blocks: Mixer blocks (token then channel mixing, Block form, no dropout) applied in turn,
// each image through all of them before the next; `params` holds each block's 12 tensors (token
// ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, then channel's).
// mixer_features: a Mixer classifier's pooled features, (B, dim): the patch embedding of the images,
// the blocks, the optional final LayerNorm, and the mean over patches, image by image.
// Kernels: mixer_blocks_kernels.h; schemas and autograd: mixerkern/ops/mixer_{blocks,features}.py.
constexpr size_t kBlockParams = 12;
at::Tensor mixer_blocks_forward(const at::Tensor& x, at::TensorList params, double eps, c10::string_view approximate);
at::Tensor mixer_features_forward(const at::Tensor& images, const at::Tensor& stem_weight, const at::Tensor& stem_bias,
                                  at::TensorList params, const std::optional<at::Tensor>& norm_weight,
                                  const std::optional<at::Tensor>& norm_bias, double eps, c10::string_view approximate);

// The op-schema signatures (mixerkern/ops/_fused_op.py), bound to one kind and form: what <op>.cpp
// registers for <op>, <op>_train and <op>_backward. Block and PostNorm share a schema (LN
// parameters and eps); BareMlp has neither.
template <MixingKind K, MixingForm F = MixingForm::Block, bool kSave = false>
auto mixing_forward_op(const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b, const at::Tensor& w1,
                       const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, double eps,
                       c10::string_view approximate, double p, const std::optional<at::Tensor>& seed) {
  static_assert(F != MixingForm::PostNorm || K == MixingKind::Channel, "only the channel MLP has a post-norm kernel");
  static_assert(!kSave || K == MixingKind::Channel, "only the channel MLP saves activations");
  auto result = mixing_forward(K, F, kSave, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed);
  if constexpr (kSave) return result;
  else return std::get<0>(result);
}

// The channel ops' backward schemas end in `Tensor? saved` (what <op>_train saved); the token ops' do not.
template <MixingKind K, MixingForm F = MixingForm::Block>
MixingGrads mixing_backward_saved_op(const at::Tensor& g, const at::Tensor& x, const at::Tensor& ln_w,
                                     const at::Tensor& ln_b, const at::Tensor& w1, const at::Tensor& b1,
                                     const at::Tensor& w2, const at::Tensor& b2, double eps,
                                     c10::string_view approximate, double p, const std::optional<at::Tensor>& seed,
                                     const std::optional<at::Tensor>& saved) {
  return mixing_backward(K, F, g, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed, saved);
}

template <MixingKind K, MixingForm F = MixingForm::Block>
MixingGrads mixing_backward_op(const at::Tensor& g, const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b,
                               const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                               double eps, c10::string_view approximate, double p,
                               const std::optional<at::Tensor>& seed) {
  return mixing_backward(K, F, g, x, ln_w, ln_b, w1, b1, w2, b2, eps, approximate, p, seed, std::nullopt);
}

// The bare MLPs' schemas: no LayerNorm parameters, no eps; the backward has no LN gradients.
template <MixingKind K, bool kSave = false>
auto mlp_forward_op(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                    const at::Tensor& b2, c10::string_view approximate, double p,
                    const std::optional<at::Tensor>& seed) {
  return mixing_forward_op<K, MixingForm::BareMlp, kSave>(x, {}, {}, w1, b1, w2, b2, 0.0, approximate, p, seed);
}

using MlpGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

template <MixingKind K>
MlpGrads mlp_backward_saved_op(const at::Tensor& g, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, c10::string_view approximate, double p,
                               const std::optional<at::Tensor>& seed, const std::optional<at::Tensor>& saved) {
  auto [dx, dlnw, dlnb, dw1, db1, dw2, db2] =
      mixing_backward(K, MixingForm::BareMlp, g, x, {}, {}, w1, b1, w2, b2, 0.0, approximate, p, seed, saved);
  return {dx, dw1, db1, dw2, db2};
}

template <MixingKind K>
MlpGrads mlp_backward_op(const at::Tensor& g, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                         const at::Tensor& w2, const at::Tensor& b2, c10::string_view approximate, double p,
                         const std::optional<at::Tensor>& seed) {
  return mlp_backward_saved_op<K>(g, x, w1, b1, w2, b2, approximate, p, seed, std::nullopt);
}

}}  // namespace mixerkern::cpu
