// Torch glue shared by every CPU op: messages, dtype dispatch, dropout settings, the bf16-dot
// weight layout, and the parallel loop over work units with per-thread scratch.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "dispatch.h"
#include "types.h"

namespace mixerkern { namespace cpu {

inline std::string shape_str(at::IntArrayRef s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// Every op's dtype rule: x is float32, bfloat16 or float64, on the CPU, and so is each parameter.
inline void check_dtypes_devices(const char* op, const at::Tensor& x,
                                 std::initializer_list<std::pair<const char*, const at::Tensor*>> params) {
  TORCH_CHECK(x.device().is_cpu(), "mixerkern.", op, ": x must be a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kDouble,
              "mixerkern.", op, ": x must be float32, bfloat16 or float64, got ", x.scalar_type());
  for (const auto& [arg, t] : params) {
    TORCH_CHECK(t->device().is_cpu(), "mixerkern.", op, ": ", arg, " must be a CPU tensor, got ", t->device());
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "mixerkern.", op, ": ", arg, " has dtype ", t->scalar_type(),
                " but x has ", x.scalar_type(), "; all must match");
  }
}

inline void check_settings(const char* op, c10::string_view approximate, double dropout_p) {
  TORCH_CHECK(approximate == "none" || approximate == "tanh", "mixerkern.", op,
              ": approximate must be 'none' or 'tanh', got '", std::string(approximate), "'");
  TORCH_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "mixerkern.", op, ": dropout_p must be in [0, 1), got ",
              dropout_p);
}

// Our bf16 struct and at::BFloat16 share the same 16-bit layout.
template <class T> T* data(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, bf16>) return reinterpret_cast<T*>(t.data_ptr<at::BFloat16>());
  else return t.data_ptr<T>();
}

// B (K, N) of a bf16-dot GEMM as gemm_bf16.h's pair strips: [strip][pair][64 columns][2], zero-padded
// past N and in the pad row of an odd K. b is a bf16 matrix, any strides (a weight or its .t()).
// One loop into one allocation: the pad / permute / contiguous chain it replaces cost ~16 us of
// dispatch and copies per layout, which the ~1 ms ops at small shapes paid two or three times a call.
inline at::Tensor bf16_pair_strips(const at::Tensor& b) {
  TORCH_INTERNAL_ASSERT(b.dim() == 2 && b.scalar_type() == at::kBFloat16);
  const int64_t K = b.size(0), N = b.size(1), K2 = depth_pairs(int(K)), strips = column_strips(int(N));
  const int64_t sk = b.stride(0), sn = b.stride(1);
  at::Tensor out = at::empty({strips, K2, kStripCols, 2}, b.options());
  const uint16_t* src = reinterpret_cast<const uint16_t*>(b.data_ptr<at::BFloat16>());
  uint16_t* dst = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  for (int64_t s = 0; s < strips; ++s)
    for (int64_t k = 0; k < 2 * K2; k += 2)
      for (int64_t n = s * kStripCols; n < (s + 1) * kStripCols; ++n, dst += 2) {
        const bool in = n < N;
        dst[0] = in ? src[k * sk + n * sn] : 0;
        dst[1] = in && k + 1 < K ? src[(k + 1) * sk + n * sn] : 0;
      }
  return out;
}

// A (M, K) of a bf16-dot GEMM as gemm_bf16.h's rows: (M, 2 depth_pairs(K)), the pad column zero.
inline at::Tensor bf16_depth_rows(const at::Tensor& a) {
  TORCH_INTERNAL_ASSERT(a.dim() == 2 && a.scalar_type() == at::kBFloat16);
  const int64_t M = a.size(0), K = a.size(1), Kp = 2 * depth_pairs(int(K)), sm = a.stride(0), sk = a.stride(1);
  at::Tensor out = at::empty({M, Kp}, a.options());
  const uint16_t* src = reinterpret_cast<const uint16_t*>(a.data_ptr<at::BFloat16>());
  uint16_t* dst = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < Kp; ++k) *dst++ = k < K ? src[m * sm + k * sk] : 0;
  return out;
}

// Calls f(T{}) with T the storage type of x's dtype.
template <class F> void with_storage_type(at::ScalarType st, F&& f) {
  if (st == at::kFloat) f(float{});
  else if (st == at::kDouble) f(double{});
  else f(bf16{});
}

// The dropout fields of a kernel-args struct, from dropout_p and the op's seed tensor.
template <class Args> void set_dropout(Args& args, double dropout_p, const std::optional<at::Tensor>& seed) {
  if (dropout_p <= 0.0) return;
  TORCH_CHECK(seed.has_value() && seed->numel() == 1 && seed->scalar_type() == at::kLong,
              "mixerkern: dropout_p > 0 needs a one-element int64 seed tensor");
  args.dropout = true;
  args.seed = uint64_t(seed->item<int64_t>());
  // Same threshold arithmetic as mixerkern/ops/_dropout.py::keep_threshold.
  args.keep_threshold = uint32_t(std::min<double>(std::floor((1.0 - dropout_p) * 4294967296.0), 4294967295.0));
  args.keep_scale = float(1.0 / (1.0 - dropout_p));
}

// work(u0, u1, scratch) over units [0, units) on all threads, each with `scratch` elements of S.
template <class S, class Work> void parallel_units(int64_t units, size_t scratch, Work&& work) {
  const auto type = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
  at::parallel_for(0, units, 1, [&](int64_t u0, int64_t u1) {
    // From torch's allocator, so 64-byte aligned: with a 16-byte aligned std::vector every
    // 64-byte row load of the scratch tiles straddled two cache lines (token mixing ran 12 % slower).
    at::Tensor buf = at::empty({int64_t(scratch)}, at::TensorOptions().dtype(type));
    work(u0, u1, buf.data_ptr<S>());
  });
}

// The kernels' compute type for x: float64 for float64, else float32 (also the saved activations').
inline at::ScalarType compute_dtype(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// A backward's `saved` argument, checked against what `<op>_train` returns for x: the contiguous
// activations, or an undefined tensor when there are none (empty, as the CUDA kernels' forward
// returns), which tells the kernels to recompute them. expected_shape() is asked only when there are.
template <class Shape>
at::Tensor saved_activations(const char* op, const std::optional<at::Tensor>& saved, const at::Tensor& x,
                             Shape&& expected_shape) {
  if (!saved.has_value() || saved->numel() == 0) return at::Tensor();
  const std::vector<int64_t> expected = expected_shape();
  TORCH_CHECK(saved->sizes() == at::IntArrayRef(expected) && saved->scalar_type() == compute_dtype(x) && saved->device().is_cpu(),
              "mixerkern.", op, "_backward: saved must be what ", op, "_train returned for this x: shape ",
              shape_str(expected), ", ", compute_dtype(x), " on the CPU; got ", shape_str(saved->sizes()), ", ",
              saved->scalar_type(), " on ", saved->device());
  return saved->contiguous();
}

// Per-thread partial sums of the parameter gradients: one zeroed row of `per_thread` per thread.
inline at::Tensor thread_partials(const at::Tensor& x, int64_t per_thread) {
  return at::zeros({at::get_num_threads(), per_thread}, x.options().dtype(compute_dtype(x)));
}

}}  // namespace mixerkern::cpu
