// gMLP spatial gating, one sample at a time. x (P x 2C') is fc1's output before GELU; with
// h = Drop(GELU(x)) = [U | V] (each P x C'), W the P x P spatial projection and b its bias:
//   S = W LN(V) + b 1^T        out = U * S
// W left-multiplies LN(V) over the patch axis, so nothing is transposed in the forward pass.
// Backward recomputes h, LN(V) and S and regenerates the dropout mask (G = dL/dout):
//   dU = G * S          dS = G * U          db += rowsum(dS)     dW += dS LN(V)^T
//   dLN(V) = W^T dS     dV = LN^T(dLN(V))   dx = [dU | dV] * Drop'(GELU'(x))
#pragma once
#include "dropout.h"
#include "gemm.h"
#include "layernorm.h"
#include "mixing_params.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

// Drop(GELU(z)) for elements idx .. idx+15 of h; *grad (if given) gets its derivative in z.
template <class V>
inline V dropped_gelu(V z, bool tanh_gelu, const Dropout& drop, uint64_t idx, V* grad = nullptr) {
  const V h = gelu(z, tanh_gelu, grad);
  if (!drop.enabled) return h;
  const V f = drop.template factor<V>(idx);
  if (grad) *grad = *grad * f;
  return h * f;
}

// V-half rows of h for one sample: hv (P x C') = Drop(GELU(x[:, C':])), then LN(V) into vn.
template <class V, class T, class S = typename V::scalar>
inline void gated_half_layernorm(const GatingArgs<T>& a, const T* x, int64_t base, const Dropout& drop, S* hv,
                                 int64_t hv_rs, S* vn, S* mean = nullptr, S* rstd = nullptr) {
  const int P = a.patches, C = a.half;
  for (int p = 0; p < P; ++p) {
    S* row = hv + p * hv_rs;
    const int64_t off = int64_t(p) * 2 * C + C;
    for (int j = 0; j < C; j += kLanes) {
      const auto m = V::mask(C - j);
      dropped_gelu<V>(load_as(x + off + j, m), a.tanh_gelu, drop, uint64_t(base + off + j)).store(row + j, m);
    }
    S mu, rs;
    row_stats<V>(row, C, a.eps, &mu, &rs);
    row_normalize<V>(row, C, mu, rs, a.ln_w, a.ln_b, vn + int64_t(p) * C);
    if (mean) { mean[p] = mu; rstd[p] = rs; }
  }
}

template <class T>
void spatial_gating_forward(const GatingArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  using M = typename V::Mask;
  const int P = a.patches, C = a.half;
  const Dropout drop = make_dropout(a);
  S* vn = scratch;                                // P x C   LN(V)
  S* hv = vn + round_to_lanes(size_t(P) * C);     // C       one row of V at a time
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * P * 2 * C;  // dropout counter of h[b, 0, 0]
    const T* x = a.x + base;
    T* out = a.out + b * P * C;
    gated_half_layernorm<V>(a, x, base, drop, hv, 0, vn);
    // out = U * (W LN(V) + b); W(i, k) = proj_wt[k P + i]. U is made here, where it is used.
    gemm<V>(P, C, P, a.proj_wt, 1, P, vn, C, [&](int i, int j, V s, M m) {
      const int64_t off = int64_t(i) * 2 * C + j;
      const V u = dropped_gelu<V>(load_as(x + off, m), a.tanh_gelu, drop, uint64_t(base + off));
      store_as(out + int64_t(i) * C + j, u * (s + V::set1(a.proj_b[i])), m);
    });
  }
}

template <class T>
void spatial_gating_backward(const GatingArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch,
                             const GatingGradPartials<compute_t<T>>& g) {
  using S = compute_t<T>;
  using V = Vec<S>;
  using M = typename V::Mask;
  const int P = a.patches, C = a.half;
  const Dropout drop = make_dropout(a);
  const size_t tile = round_to_lanes(size_t(P) * C);
  S* hv = scratch;              // P x C   V
  S* vn = hv + tile;            // P x C   LN(V)
  S* vn_t = vn + tile;          // C x P   LN(V)^T
  S* ds = vn_t + tile;          // P x C   dS
  S* dvn = ds + tile;           // P x C   dLN(V)
  S* mean = dvn + tile;         // P
  S* rstd = mean + round_to_lanes(size_t(P));  // P
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * P * 2 * C;
    const T* x = a.x + base;
    const T* gout = a.grad_out + b * P * C;
    T* dx = a.out + base;
    gated_half_layernorm<V>(a, x, base, drop, hv, C, vn, mean, rstd);
    // S recomputed in registers: dS = G * U is kept, dU = G * S goes straight to dx's U half.
    gemm<V>(P, C, P, a.proj_wt, 1, P, vn, C, [&](int i, int j, V s, M m) {
      const int64_t off = int64_t(i) * 2 * C + j;
      V grad;
      const V u = dropped_gelu<V>(load_as(x + off, m), a.tanh_gelu, drop, uint64_t(base + off), &grad);
      const V go = load_as(gout + int64_t(i) * C + j, m);
      (go * u).store(ds + int64_t(i) * C + j, m);
      store_as(dx + off, go * (s + V::set1(a.proj_b[i])) * grad, m);
    });
    for (int i = 0; i < P; ++i) {
      V sum = V::zero();
      for (int j = 0; j < C; j += kLanes) sum = sum + V::load(ds + int64_t(i) * C + j, V::mask(C - j));
      g.proj_b[i] += sum.reduce_add();
    }
    transpose(vn, P, C, vn_t);
    gemm<V>(P, P, C, ds, C, 1, vn_t, P, AccumulateTo<V>{g.proj_w, P});  // dW += dS LN(V)^T
    gemm<V>(P, C, P, a.proj_w, 1, P, ds, C, StoreTo<V>{dvn, C});        // W^T(i, k) = proj_w[k P + i]
    for (int p = 0; p < P; ++p) {
      const int64_t off = int64_t(p) * 2 * C + C;
      row_layernorm_backward<V>(hv + int64_t(p) * C, dvn + int64_t(p) * C, C, a.ln_w, mean[p], rstd[p], g.ln_w,
                                g.ln_b, [&](int j, V dv, M m) {
                                  V grad;
                                  dropped_gelu<V>(load_as(x + off + j, m), a.tanh_gelu, drop,
                                                  uint64_t(base + off + j), &grad);
                                  store_as(dx + off + j, dv * grad, m);
                                });
    }
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
