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

// h = Drop(GELU(x)) over one row of n values whose first element is element idx of h, and
// dh = dh/dx if given.
template <class V, class T, class S = typename V::scalar>
inline void dropped_gelu_row(const T* x, int n, bool tanh_gelu, const Dropout& drop, int64_t idx, S* h,
                             S* dh = nullptr) {
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    load_as(x + j, m).store(h + j, m);
  }
  gelu_inplace(h, dh, n, tanh_gelu);
  if (!drop.enabled) return;
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    const V f = drop.template factor<V>(uint64_t(idx + j));
    (V::load(h + j, m) * f).store(h + j, m);
    if (dh) (V::load(dh + j, m) * f).store(dh + j, m);
  }
}

// Both halves of h for one sample, row by row (x is read once, front to back): U into hu, V into
// hv (row stride hv_rs: 0 reuses one row buffer), LN(V) into vn, and with gu/gv the derivatives.
template <class V, class T, class S = typename V::scalar>
inline void gating_prologue(const GatingArgs<T>& a, const T* x, int64_t base, const Dropout& drop, S* hu, S* hv,
                            int64_t hv_rs, S* vn, S* gu = nullptr, S* gv = nullptr, S* mean = nullptr,
                            S* rstd = nullptr) {
  const int P = a.patches, C = a.half;
  for (int p = 0; p < P; ++p) {
    const int64_t off = int64_t(p) * 2 * C, r = int64_t(p) * C;
    S* v = hv + p * hv_rs;
    dropped_gelu_row<V>(x + off, C, a.tanh_gelu, drop, base + off, hu + r, gu ? gu + r : nullptr);
    dropped_gelu_row<V>(x + off + C, C, a.tanh_gelu, drop, base + off + C, v, gv ? gv + r : nullptr);
    S mu, rs;
    row_stats<V>(v, C, a.eps, &mu, &rs);
    row_normalize<V>(v, C, mu, rs, a.ln_w, a.ln_b, vn + r);
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
  const size_t tile = round_to_lanes(size_t(P) * C);
  S* vn = scratch;         // P x C   LN(V)
  S* hu = vn + tile;       // P x C   U
  S* hv = hu + tile;       // C       one row of V at a time
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * P * 2 * C;  // dropout counter of h[b, 0, 0]
    T* out = a.out + b * P * C;
    gating_prologue<V>(a, a.x + base, base, drop, hu, hv, 0, vn);
    // out = U * (W LN(V) + b); W(i, k) = proj_wt[k P + i].
    gemm<V>(P, C, P, a.proj_wt, 1, P, vn, C, [&](int i, int j, V s, M m) {
      const int64_t r = int64_t(i) * C + j;
      store_as(out + r, V::load(hu + r, m) * (s + V::set1(a.proj_b[i])), m);
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
  S* hu = scratch;          // P x C   U, then dS (each element read, then overwritten, in one epilogue)
  S* hv = hu + tile;        // P x C   V
  S* gu = hv + tile;        // P x C   dU/dx
  S* gv = gu + tile;        // P x C   dV/dx
  S* vn = gv + tile;        // P x C   LN(V)
  S* vn_t = vn + tile;      // C x P   LN(V)^T, then dLN(V) (P x C)
  S* mean = vn_t + tile;    // P
  S* rstd = mean + round_to_lanes(size_t(P));  // P
  S* ds = hu;
  S* dvn = vn_t;
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * P * 2 * C;
    const T* x = a.x + base;
    const T* gout = a.grad_out + b * P * C;
    T* dx = a.out + base;
    gating_prologue<V>(a, x, base, drop, hu, hv, C, vn, gu, gv, mean, rstd);
    // S recomputed in registers: dS = G * U replaces U, dU = G * S goes straight to dx's U half.
    gemm<V>(P, C, P, a.proj_wt, 1, P, vn, C, [&](int i, int j, V s, M m) {
      const int64_t r = int64_t(i) * C + j;
      const V go = load_as(gout + r, m);
      const V sg = go * (s + V::set1(a.proj_b[i]));
      (go * V::load(hu + r, m)).store(ds + r, m);
      store_as(dx + int64_t(i) * 2 * C + j, sg * V::load(gu + r, m), m);
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
      const int64_t r = int64_t(p) * C;
      T* dxv = dx + int64_t(p) * 2 * C + C;
      const S* gvp = gv + r;
      row_layernorm_backward<V>(hv + r, dvn + r, C, a.ln_w, mean[p], rstd[p], g.ln_w, g.ln_b,
                                [&](int j, V d, M m) { store_as(dxv + j, d * V::load(gvp + j, m), m); });
    }
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
// B
