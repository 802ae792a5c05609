// Fourier mixing (FNet), one sample X (S tokens x D channels) at a time:
//   out = LN(X + Z),   Z = Re(F_S X F_D) = C_S X C_D - S_S X S_D.
// Z comes either from the real DFT as GEMMs (below) or from an FFT done by the glue (spec).
// Hermitian symmetry halves the GEMM work: Y = X F_D only needs columns k < H = D/2 + 1, since
// column D-k is the conjugate of column k. With Yr = X C_D and Yi = -X S_D (D x H each),
//   P = C_S Yr,  Q = S_S Yi,  Z[:, k] = P[:, k] + Q[:, k],  Z[:, D-k] = P[:, k] - Q[:, k].
// The map X -> Z is self-adjoint (F_S, F_D are symmetric), so the backward applies it again:
//   dV = LN^T(G),  dX = dV + Z(dV).
// A training step's forward saves X + Z, so that its backward transforms only dV.
#pragma once
#include "gemm.h"
#include "layernorm.h"
#include "mixing_params.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

template <class S> struct FourierScratch {  // carved out of fourier_scratch(...) elements
  S *X, *z, *dv, *y, *p, *q, *row, *grow, *mean, *rstd;
  FourierScratch(S* base, int tokens, int dim, bool backward) {
    const size_t sd = round_to_lanes(size_t(tokens) * dim), h = size_t(fourier_half(dim));
    X = base; z = X + sd; dv = backward ? z + sd : nullptr;
    y = z + sd * (backward ? 2 : 1);
    p = y + round_to_lanes(tokens * 2 * h); q = p + round_to_lanes(tokens * h);
    row = q + round_to_lanes(tokens * h); grow = row + round_to_lanes(dim);
    mean = grow + round_to_lanes(dim); rstd = mean + round_to_lanes(tokens);
  }
};

// z = Re(F_S X F_D) for X in the compute type, by three GEMMs (see the top of the file).
template <class V, class T, class S = typename V::scalar>
void dft2_by_gemm(const FourierArgs<T>& a, const S* X, S* z, const FourierScratch<S>& w) {
  const int ns = a.tokens, D = a.dim, H = fourier_half(D);
  gemm<V>(ns, 2 * H, D, X, D, 1, a.bd, 2 * H, StoreTo<V>{w.y, 2 * H});  // [Yr | Yi]
  gemm<V>(ns, H, ns, a.cs, ns, 1, w.y, 2 * H, StoreTo<V>{w.p, H});
  gemm<V>(ns, H, ns, a.ss, ns, 1, w.y + H, 2 * H, StoreTo<V>{w.q, H});
  for (int s = 0; s < ns; ++s) {
    const S *p = w.p + int64_t(s) * H, *q = w.q + int64_t(s) * H;
    S* zr = z + int64_t(s) * D;
    for (int k = 0; k < H; ++k) zr[k] = p[k] + q[k];
    for (int k = H; k < D; ++k) zr[k] = p[D - k] - q[D - k];
  }
}

// z = Re(FFT2) of sample b from its half spectrum: Re Z[s, k] = Re H[s, k] for k < H, and by
// Hermitian symmetry Re H[(S - s) mod S, D - k] for the other columns.
template <class T, class S>
void dft2_from_spectrum(const FourierArgs<T>& a, int64_t b, S* z) {
  const int ns = a.tokens, D = a.dim, H = fourier_half(D);
  const S* spec = a.spec + b * ns * H * 2;
  for (int s = 0; s < ns; ++s) {
    const S* row = spec + int64_t(s) * H * 2;
    const S* mirror = spec + int64_t((ns - s) % ns) * H * 2;
    S* zr = z + int64_t(s) * D;
    for (int k = 0; k < H; ++k) zr[k] = row[2 * k];
    for (int k = H; k < D; ++k) zr[k] = mirror[2 * (D - k)];
  }
}

// z = Z(x[b]) by whichever path the args select (X: x[b] in the compute type, GEMM path only).
template <class V, class T, class S = typename V::scalar>
void fourier_mix(const FourierArgs<T>& a, int64_t b, const T* x, S* z, const FourierScratch<S>& w) {
  if (a.spec) return dft2_from_spectrum(a, b, z);
  const int64_t n = int64_t(a.tokens) * a.dim;
  for (int64_t i = 0; i < n; i += kLanes) {
    const auto m = V::mask(int(imin64(n - i, kLanes)));
    load_as(x + i, m).store(w.X + i, m);
  }
  dft2_by_gemm<V>(a, w.X, z, w);
}

// row = x + z over one row of n.
template <class V, class T, class S = typename V::scalar>
inline void add_rows(const T* x, const S* z, int n, S* row) {
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    (load_as(x + j, m) + V::load(z + j, m)).store(row + j, m);
  }
}

template <class T>
void fourier_mixing_forward(const FourierArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int ns = a.tokens, D = a.dim;
  const FourierScratch<S> w(scratch, ns, D, false);
  for (int64_t b = b0; b < b1; ++b) {
    const T* x = a.x + b * ns * D;
    T* out = a.out + b * ns * D;
    fourier_mix<V>(a, b, x, w.z, w);
    for (int s = 0; s < ns; ++s) {
      S* row = a.saved ? a.saved + (b * ns + s) * D : w.row;
      add_rows<V>(x + int64_t(s) * D, w.z + int64_t(s) * D, D, row);
      S mu, rs;
      row_stats<V>(row, D, a.eps, &mu, &rs);
      row_normalize<V>(row, D, mu, rs, a.ln_w, a.ln_b, out + int64_t(s) * D);
    }
  }
}

template <class T>
void fourier_mixing_backward(const FourierArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch,
                             const LayerNormGradPartials<compute_t<T>>& g) {
  using S = compute_t<T>;
  using V = Vec<S>;
  using M = typename V::Mask;
  const int ns = a.tokens, D = a.dim;
  const FourierScratch<S> w(scratch, ns, D, true);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * ns * D;
    const T* x = a.x + base;
    const T* gout = a.grad_out + base;
    S* dv = a.dv ? a.dv + base : w.dv;
    if (!a.saved) fourier_mix<V>(a, b, x, w.z, w);
    for (int s = 0; s < ns; ++s) {
      const int64_t r = int64_t(s) * D;
      const S* row = a.saved ? a.saved + base + r : w.row;
      if (!a.saved) add_rows<V>(x + r, w.z + r, D, w.row);
      S mu, rs;
      row_stats<V>(row, D, a.eps, &mu, &rs);
      for (int j = 0; j < D; j += kLanes) load_as(gout + r + j, V::mask(D - j)).store(w.grow + j, V::mask(D - j));
      row_layernorm_backward<V>(row, w.grow, D, a.ln_w, mu, rs, g.ln_w, g.ln_b,
                                [&](int j, V d, M m) { d.store(dv + r + j, m); });
    }
    if (a.dv) continue;  // FFT path: the glue transforms dv, then add_spectrum finishes
    dft2_by_gemm<V>(a, dv, w.z, w);
    T* dx = a.out + base;
    const int64_t n = int64_t(ns) * D;
    for (int64_t i = 0; i < n; i += kLanes) {
      const auto m = V::mask(int(imin64(n - i, kLanes)));
      store_as(dx + i, V::load(dv + i, m) + V::load(w.z + i, m), m);
    }
  }
}

template <class T>
void fourier_mixing_add_spectrum(const FourierArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int ns = a.tokens, D = a.dim;
  const int64_t n = int64_t(ns) * D;
  for (int64_t b = b0; b < b1; ++b) {
    dft2_from_spectrum(a, b, scratch);
    const S* dv = a.dv + b * n;
    T* dx = a.out + b * n;
    for (int64_t i = 0; i < n; i += kLanes) {
      const auto m = V::mask(int(imin64(n - i, kLanes)));
      store_as(dx + i, V::load(dv + i, m) + V::load(scratch + i, m), m);
    }
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
