// Row-wise LayerNorm forward and backward helpers (two-pass statistics in the compute type).
#pragma once
#include "vec.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

// Sum of f(x[j]) over one row of n values (masked lanes contribute f's value at zero: callers
// make it 0). Four accumulators, because one add chain is latency-bound (4 cycles per vector).
template <class V, class T, class F>
inline typename V::scalar row_sum(const T* x, int n, F f) {
  V acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  int j = 0;
  for (; j + 4 * kLanes <= n; j += 4 * kLanes)
    for (int q = 0; q < 4; ++q) acc[q] = f(acc[q], load_as(x + j + q * kLanes, V::mask(kLanes)), V::mask(kLanes));
  for (; j < n; j += kLanes) acc[0] = f(acc[0], load_as(x + j, V::mask(n - j)), V::mask(n - j));
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add();
}

// Mean and 1/sqrt(var + eps) of one row of n values (two passes: no E[x^2] - mean^2 cancellation).
template <class V, class T, class S = typename V::scalar>
inline void row_stats(const T* x, int n, S eps, S* mean, S* rstd) {
  using M = typename V::Mask;
  const S mu = row_sum<V>(x, n, [](V acc, V v, M) { return acc + v; }) / S(n);
  const V vmu = V::set1(mu);
  const S sq = row_sum<V>(x, n, [&](V acc, V v, M m) {
    const V d = (v - vmu).keep(m);  // lanes past the row must not count
    return fmadd(d, d, acc);
  });
  *mean = mu;
  *rstd = S(1) / std::sqrt(sq / S(n) + eps);
}

// Mean and rstd of `rows` rows of n values, kStatRows rows per pass: the rows' sums are independent
// chains the core overlaps, and 1/sqrt runs once per vector of rows (row_stats row by row: 178-270
// TSC cycles per row of 256 floats; the same passes with a scalar 1/sqrt per row: 161; this: ~90).
constexpr int kStatRows = kLanes;
template <class V, class T, class S = typename V::scalar>
inline void rows_stats(const T* x, int rows, int n, S eps, S* mean, S* rstd) {
  using M = typename V::Mask;
  const M full = V::mask(kLanes);
  // acc[q] = f(acc[q], v, mask) over one row; the pass is a template argument so that neither
  // its choice nor a tail mask costs anything in the main loop.
  auto row = [&](const T* xr, auto f) {
    V acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
    int j = 0;
    for (; j + 4 * kLanes <= n; j += 4 * kLanes)
      for (int q = 0; q < 4; ++q) acc[q] = f(acc[q], load_as(xr + j + q * kLanes, full), std::false_type{}, full);
    for (; j < n; j += kLanes) acc[0] = f(acc[0], load_as(xr + j, V::mask(n - j)), std::true_type{}, V::mask(n - j));
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add() / S(n);
  };
  alignas(64) S mu[kStatRows], var[kStatRows];  // locals: stores to mean/rstd could alias x
  for (int r0 = 0; r0 < rows; r0 += kStatRows) {
    const int nr = imin(kStatRows, rows - r0);
    const T* x0 = x + int64_t(r0) * n;
    for (int r = 0; r < nr; ++r) mu[r] = row(x0 + int64_t(r) * n, [](V a, V v, auto, M) { return a + v; });
    for (int r = 0; r < nr; ++r) {
      const V vmu = V::set1(mu[r]);
      var[r] = row(x0 + int64_t(r) * n, [&](V a, V v, auto tail, M m) {
        V d = v - vmu;
        if constexpr (decltype(tail)::value) d = d.keep(m);  // lanes past the row must not count
        return fmadd(d, d, a);
      });
    }
    const M m = V::mask(nr);  // one vector of rows: a scalar sqrt and division per row cost ~2x
    V::load(mu, m).store(mean + r0, m);
    (V::set1(S(1)) / sqrt(V::load(var, m) + V::set1(eps))).store(rstd + r0, m);
  }
}

// y = (x - mean) * rstd * w + b for one row (y in the compute or the storage type).
template <class V, class T, class U, class S = typename V::scalar>
inline void row_normalize(const T* x, int n, S mean, S rstd, const S* w, const S* b, U* y) {
  const V vmu = V::set1(mean), vr = V::set1(rstd);
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    const V xhat = (load_as(x + j, m) - vmu) * vr;
    store_as(y + j, fmadd(xhat, V::load(w + j, m), V::load(b + j, m)), m);
  }
}

// LayerNorm of `rows` consecutive rows of length n into y (compute or storage type); row statistics
// go to mean/rstd if given.
template <class V, class T, class U, class S = typename V::scalar>
inline void normalize_rows(const T* x, int rows, int n, S eps, const S* w, const S* b, U* y, S* mean = nullptr,
                           S* rstd = nullptr) {
  alignas(64) S mu[kStatRows], rs[kStatRows];
  for (int r0 = 0; r0 < rows; r0 += kStatRows) {
    const int nr = imin(kStatRows, rows - r0);
    rows_stats<V>(x + int64_t(r0) * n, nr, n, eps, mu, rs);
    for (int r = 0; r < nr; ++r) {
      row_normalize<V>(x + int64_t(r0 + r) * n, n, mu[r], rs[r], w, b, y + int64_t(r0 + r) * n);
      if (mean) { mean[r0 + r] = mu[r]; rstd[r0 + r] = rs[r]; }
    }
  }
}

// Backward of y = LN(x) for one row, given dy:
//   dw += dy xhat, db += dy, dxhat = dy w,
//   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
// handed to emit(j, dx[j:j+16], mask), which chains it on (residual, activation) and stores it.
template <class V, class T, class Emit, class S = typename V::scalar>
inline void row_layernorm_backward(const T* x, const S* dy, int n, const S* w, S mean, S rstd, S* dw, S* db,
                                   Emit&& emit) {
  const V vmu = V::set1(mean), vr = V::set1(rstd);
  V s1 = V::zero(), s2 = V::zero();
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    const V xhat = (load_as(x + j, m) - vmu) * vr;
    const V d = V::load(dy + j, m);
    const V dxhat = d * V::load(w + j, m);
    s1 = s1 + dxhat;
    s2 = fmadd(dxhat, xhat, s2);
    fmadd(d, xhat, V::load(dw + j, m)).store(dw + j, m);
    (d + V::load(db + j, m)).store(db + j, m);
  }
  const V c1 = V::set1(s1.reduce_add() / S(n)), c2 = V::set1(s2.reduce_add() / S(n));
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    const V xhat = (load_as(x + j, m) - vmu) * vr;
    const V dxhat = V::load(dy + j, m) * V::load(w + j, m);
    emit(j, vr * (dxhat - c1 - xhat * c2), m);
  }
}

// The mixing ops' case: dx = g + LN^T(dy), g being the residual branch's gradient.
template <class V, class T, class S = typename V::scalar>
inline void row_layernorm_backward_residual(const T* x, const S* dy, const T* g, int n, const S* w, S mean, S rstd,
                                            S* dw, S* db, T* dx) {
  row_layernorm_backward<V>(x, dy, n, w, mean, rstd, dw, db, [&](int j, V v, typename V::Mask m) {
    store_as(dx + j, load_as(g + j, m) + v, m);
  });
}

}}}  // namespace mixerkern::cpu::MK_ISA
