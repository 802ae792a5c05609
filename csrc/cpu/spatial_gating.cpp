// mixerkern::spatial_gating on CPU: argument checks, parameter layout, threading over samples and
// the reduction of per-thread weight gradients. Math: spatial_gating_kernels.h; schema, fake
// kernel and autograd: mixerkern/ops/spatial_gating.py.
#include <torch/library.h>

#include "dispatch.h"
#include "op_glue.h"

namespace mixerkern { namespace cpu {
namespace {

constexpr const char* kOp = "spatial_gating";

void check_inputs(const at::Tensor& x, const at::Tensor& ln_w, const at::Tensor& ln_b, const at::Tensor& proj_w,
                  const at::Tensor& proj_b, c10::string_view approximate, double dropout_p) {
  TORCH_CHECK(x.dim() == 3, "mixerkern.", kOp, ": x must be 3-D (B, num_patches, hidden), got shape ",
              shape_str(x.sizes()));
  check_dtypes_devices(kOp, x, {{"ln_weight", &ln_w}, {"ln_bias", &ln_b}, {"proj_weight", &proj_w},
                                {"proj_bias", &proj_b}});
  const int64_t P = x.size(1), hidden = x.size(2);
  TORCH_CHECK(hidden % 2 == 0 && hidden > 0, "mixerkern.", kOp,
              ": x's last dimension (hidden) must be even and positive, to split into gate halves; got ", hidden);
  const std::pair<const char*, std::pair<const at::Tensor*, std::vector<int64_t>>> expected[] = {
      {"ln_weight", {&ln_w, {hidden / 2}}}, {"ln_bias", {&ln_b, {hidden / 2}}},
      {"proj_weight", {&proj_w, {P, P}}},   {"proj_bias", {&proj_b, {P}}}};
  for (const auto& [arg, te] : expected)
    TORCH_CHECK(te.first->sizes() == at::IntArrayRef(te.second), "mixerkern.", kOp, ": ", arg, " must have shape ",
                shape_str(te.second), " for x of shape ", shape_str(x.sizes()), ", got ", shape_str(te.first->sizes()));
  TORCH_CHECK(P < (1 << 30) && hidden < (1 << 30), "mixerkern.", kOp, ": dimensions too large");
  check_settings(kOp, approximate, dropout_p);
}

// Compute-type copies of the parameters in the layouts the kernels read, plus the settings.
template <class T> struct Prepared {
  using S = compute_t<T>;
  at::Tensor ln_w, ln_b, proj_w, proj_wt, proj_b;
  GatingArgs<T> args;

  Prepared(const at::Tensor& x, const at::Tensor& ln_weight, const at::Tensor& ln_bias, const at::Tensor& proj_weight,
           const at::Tensor& proj_bias, double eps, c10::string_view approximate, double dropout_p,
           const std::optional<at::Tensor>& seed) {
    const auto ct = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
    auto prep = [&](const at::Tensor& t) { return t.to(ct).contiguous(); };
    ln_w = prep(ln_weight); ln_b = prep(ln_bias); proj_w = prep(proj_weight); proj_b = prep(proj_bias);
    proj_wt = proj_w.t().contiguous();
    args.batch = x.size(0);
    args.patches = int(x.size(1));
    args.half = int(x.size(2) / 2);
    args.ln_w = ln_w.data_ptr<S>(); args.ln_b = ln_b.data_ptr<S>();
    args.proj_w = proj_w.data_ptr<S>(); args.proj_wt = proj_wt.data_ptr<S>(); args.proj_b = proj_b.data_ptr<S>();
    args.eps = S(eps);
    args.tanh_gelu = approximate == "tanh";
    set_dropout(args, dropout_p, seed);
  }
};

template <class T> const auto& kernels() { return op_kernels_for<T>().gating; }

at::Tensor forward(const at::Tensor& x_in, const at::Tensor& ln_weight, const at::Tensor& ln_bias,
                   const at::Tensor& proj_weight, const at::Tensor& proj_bias, double eps, c10::string_view approximate,
                   double dropout_p, const std::optional<at::Tensor>& seed) {
  check_inputs(x_in, ln_weight, ln_bias, proj_weight, proj_bias, approximate, dropout_p);
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1), x.size(2) / 2}, x.options());
  if (out.numel() == 0) return out;
  with_storage_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    Prepared<T> prep(x, ln_weight, ln_bias, proj_weight, proj_bias, eps, approximate, dropout_p, seed);
    GatingArgs<T>& a = prep.args;
    a.x = data<T>(x);
    a.out = data<T>(out);
    const auto& k = kernels<T>();
    parallel_units<compute_t<T>>(a.batch, gating_scratch(a.patches, a.half, false),
                                 [&](int64_t b0, int64_t b1, compute_t<T>* buf) { k.forward(a, b0, b1, buf); });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& x_in, const at::Tensor& ln_weight, const at::Tensor& ln_bias,
    const at::Tensor& proj_weight, const at::Tensor& proj_bias, double eps, c10::string_view approximate,
    double dropout_p, const std::optional<at::Tensor>& seed) {
  check_inputs(x_in, ln_weight, ln_bias, proj_weight, proj_bias, approximate, dropout_p);
  const std::vector<int64_t> out_shape{x_in.size(0), x_in.size(1), x_in.size(2) / 2};
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(out_shape) && grad_out.scalar_type() == x_in.scalar_type(),
              "mixerkern.", kOp, "_backward: grad_out must have shape ", shape_str(out_shape), " and x's dtype, got ",
              shape_str(grad_out.sizes()), " ", grad_out.scalar_type());
  const at::Tensor x = x_in.contiguous(), g = grad_out.contiguous();
  at::Tensor dx = at::empty_like(x);
  const int64_t C = x.size(2) / 2, P = x.size(1);
  // Per-thread partial sums: [ln_w C | ln_b C | proj_w P*P | proj_b P].
  const int64_t per_thread = 2 * C + P * P + P;
  at::Tensor partials = thread_partials(x, per_thread);
  if (x.numel() > 0) {
    with_storage_type(x.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      using S = compute_t<T>;
      Prepared<T> prep(x, ln_weight, ln_bias, proj_weight, proj_bias, eps, approximate, dropout_p, seed);
      GatingArgs<T>& a = prep.args;
      a.x = data<T>(x);
      a.grad_out = data<T>(g);
      a.out = data<T>(dx);
      const auto& k = kernels<T>();
      parallel_units<S>(a.batch, gating_scratch(a.patches, a.half, true), [&](int64_t b0, int64_t b1, S* buf) {
        S* base = partials.data_ptr<S>() + at::get_thread_num() * per_thread;
        k.backward(a, b0, b1, buf, GatingGradPartials<S>{base, base + C, base + 2 * C, base + 2 * C + P * P});
      });
    });
  }
  const at::Tensor total = partials.sum(0).to(x.scalar_type());
  auto part = [&](int64_t offset, int64_t n) { return total.narrow(0, offset, n).clone(); };
  return {dx, part(0, C), part(C, C), part(2 * C, P * P).view({P, P}), part(2 * C + P * P, P)};
}

}  // namespace
}}  // namespace mixerkern::cpu

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) {
  m.impl("spatial_gating", &mixerkern::cpu::forward);
  m.impl("spatial_gating_backward", &mixerkern::cpu::backward);
}
