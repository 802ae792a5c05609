// mixerkern::patch_embed on CPU: argument checks, parameter layout, threading over images and the
// reduction of per-thread weight gradients. Math: patch_embed_kernels.h; schema, fake kernel and
// autograd: mixerkern/ops/patch_embed.py.
#include <torch/library.h>

#include "dispatch.h"
#include "op_glue.h"

namespace mixerkern { namespace cpu {
namespace {

constexpr const char* kOp = "patch_embed";

void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 4, "mixerkern.", kOp, ": x must be 4-D (B, in_chans, height, width), got shape ",
              shape_str(x.sizes()));
  check_dtypes_devices(kOp, x, {{"weight", &weight}, {"bias", &bias}});
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == C && weight.size(2) == weight.size(3) && weight.size(2) > 0 &&
                  weight.size(0) > 0,
              "mixerkern.", kOp, ": weight must have shape (dim, in_chans, patch, patch) with in_chans = ", C,
              " for x of shape ", shape_str(x.sizes()), ", got ", shape_str(weight.sizes()));
  const int64_t D = weight.size(0), p = weight.size(2);
  TORCH_CHECK(H % p == 0 && W % p == 0, "mixerkern.", kOp, ": x's height and width must be multiples of the patch size ",
              p, " (weight.size(-1)), got x of shape ", shape_str(x.sizes()));
  TORCH_CHECK(bias.sizes() == at::IntArrayRef({D}), "mixerkern.", kOp, ": bias must have shape (", D,
              ",) for weight of shape ", shape_str(weight.sizes()), ", got ", shape_str(bias.sizes()));
  TORCH_CHECK(C * p * p < (1 << 30) && D < (1 << 30) && H * W < (1 << 30), "mixerkern.", kOp, ": dimensions too large");
}

// Compute-type copies of W (dim x K) and, for the forward, W^T, plus the shapes.
template <class T> struct Prepared {
  using S = compute_t<T>;
  at::Tensor w, wt, bias;
  PatchArgs<T> args;

  Prepared(bool forward, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias_in) {
    const auto ct = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
    w = weight.to(ct).reshape({weight.size(0), -1}).contiguous();
    if (forward) wt = w.t().contiguous();
    bias = bias_in.to(ct).contiguous();
    args.batch = x.size(0);
    args.channels = int(x.size(1));
    args.height = int(x.size(2));
    args.width = int(x.size(3));
    args.patch = int(weight.size(2));
    args.dim = int(weight.size(0));
    args.w = w.data_ptr<S>(); args.bias = bias.data_ptr<S>();
    if (forward) args.wt = wt.data_ptr<S>();
  }
};

template <class T> const PatchKernels<T>& kernels() {
  if constexpr (std::is_same_v<T, float>) return active_kernels().f32.patch;
  else if constexpr (std::is_same_v<T, double>) return generic_kernel_table().f64.patch;  // see kernel_table.h
  else return active_kernels().b16.patch;
}

at::Tensor forward(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias) {
  check_inputs(x_in, weight, bias);
  const at::Tensor x = x_in.contiguous();
  const int64_t p = weight.size(2), P = (x.size(2) / p) * (x.size(3) / p);
  at::Tensor out = at::empty({x.size(0), P, weight.size(0)}, x.options());
  if (out.numel() == 0) return out;
  with_storage_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    Prepared<T> prep(true, x, weight, bias);
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
  check_inputs(x_in, weight, bias);
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
      Prepared<T> prep(false, x, weight, bias);
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
