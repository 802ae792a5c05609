// mixerkern::patch_embed on CPU: argument checks, parameter layout, threading over images and the
// reduction of per-thread weight gradients. Math: patch_embed_kernels.h; schema, fake kernel and
// autograd: mixerkern/ops/patch_embed.py.
#include <torch/library.h>

#include "dispatch.h"
#include "patch_embed_op.h"

namespace mixerkern { namespace cpu {
namespace {

constexpr const char* kOp = "patch_embed";

template <class T> const auto& kernels() { return op_kernels_for<T>().patch; }

at::Tensor forward(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias) {
  check_patch_inputs(kOp, x_in, weight, bias);
  const at::Tensor x = x_in.contiguous();
  const int64_t p = weight.size(2), P = (x.size(2) / p) * (x.size(3) / p);
  at::Tensor out = at::empty({x.size(0), P, weight.size(0)}, x.options());
  if (out.numel() == 0) return out;
  with_storage_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    PreparedPatch<T> prep(true, x, weight, bias);
    PatchArgs<T>& a = prep.args;
    a.x = data<T>(x);
    a.out = data<T>(out);
    const auto& k = kernels<T>();
    parallel_units<compute_t<T>>(a.batch, patch_scratch(a.patches(), a.depth(), a.dim, false),
                                 [&](int64_t b0, int64_t b1, compute_t<T>* buf) { k.forward(a, b0, b1, buf); });
  });
  return out;
}

// x_grad false: dx is returned empty and its GEMM skipped (autograd's choice when x needs no gradient).
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& x_in,
                                                        const at::Tensor& weight, const at::Tensor& bias, bool x_grad) {
  check_patch_inputs(kOp, x_in, weight, bias);
  const int64_t D = weight.size(0), p = weight.size(2), K = weight.numel() / D;
  const std::vector<int64_t> out_shape{x_in.size(0), (x_in.size(2) / p) * (x_in.size(3) / p), D};
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(out_shape) && grad_out.scalar_type() == x_in.scalar_type(),
              "mixerkern.", kOp, "_backward: grad_out must have shape ", shape_str(out_shape), " and x's dtype, got ",
              shape_str(grad_out.sizes()), " ", grad_out.scalar_type());
  const at::Tensor x = x_in.contiguous(), g = grad_out.contiguous();
  at::Tensor dx = x_grad ? at::empty_like(x) : at::empty({0}, x.options());
  const int64_t per_thread = D * K + D;  // [w D*K | bias D]
  at::Tensor partials = thread_partials(x, per_thread);
  if (x.numel() > 0) {
    with_storage_type(x.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      using S = compute_t<T>;
      PreparedPatch<T> prep(false, x, weight, bias);
      PatchArgs<T>& a = prep.args;
      a.x = data<T>(x);
      a.grad_out = data<T>(g);
      a.out = x_grad ? data<T>(dx) : nullptr;
      const auto& k = kernels<T>();
      parallel_units<S>(a.batch, patch_scratch(a.patches(), a.depth(), a.dim, true), [&](int64_t b0, int64_t b1, S* buf) {
        S* base = partials.data_ptr<S>() + at::get_thread_num() * per_thread;
        k.backward(a, b0, b1, buf, PatchGradPartials<S>{base, base + D * K});
      });
    });
  }
  const at::Tensor total = partials.sum(0).to(x.scalar_type());
  return {dx, total.narrow(0, 0, D * K).view(weight.sizes()).clone(), total.narrow(0, D * K, D).clone()};
}

}  // namespace
}}  // namespace mixerkern::cpu

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  m.impl("patch_embed", &mixerkern::cpu::forward);
  m.impl("patch_embed_backward", &mixerkern::cpu::backward);
}
