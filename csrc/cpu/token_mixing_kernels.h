// Token mixing, one sample at a time (X is P x D, P patches, D channels, H = token_hidden):
//   U = LN(X) (rows)    A = GELU(W1 U + b1) (H x D)    out = X + Drop(W2 A + b2)
// The token MLP is a left-multiplication over the patch axis, so X is never transposed.
// Backward recomputes U and A instead of storing them, and regenerates the dropout mask (saving H
// measured 0.91x fwd+bwd at mixer-cifar100's shapes: its transpose and traffic cost more than the GEMM):
//   dZ = G * mask                 dW2 += dZ A^T        db2 += rowsum(dZ)
//   dH = (W2^T dZ) * GELU'(H)     dW1 += dH U^T        db1 += rowsum(dH)
//   dU = W1^T dH                  dX = G + LN^T(dU)
// The two NT products (dW2, dW1) take A^T and dH^T as row-major B operands, which is why the
// backward computes H^T = U^T W1^T directly (same GEMM, transposed roles).
#pragma once
#include "dropout.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "layernorm.h"
#include "mixing_params.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

// out = X + Drop(C + bias): the closing epilogue of both mixing ops. The bias is per row for token
// mixing (one per patch) and per column for channel mixing (one per channel). Element (i, j) of
// the block is element base + i*ld + j of the op's tensor, which is the dropout counter.
template <bool kRowBias, class V, class S = typename V::scalar>
inline V add_bias(V v, const S* bias, int i, int j, typename V::Mask m) {
  if constexpr (kRowBias) return v + V::set1(bias[i]);
  else return v + V::load(bias + j, m);
}

// dst = C + bias: the pre-activation, which gelu_inplace then maps (a separate pass, because
// GELU interleaved over four vectors is 1.7x faster than one vector per epilogue call).
template <class V, bool kRowBias, class S = typename V::scalar> struct StoreBiased {
  S* dst; int64_t ld; const S* bias;
  void operator()(int i, int j, V v, typename V::Mask m) const {
    add_bias<kRowBias>(v, bias, i, j, m).store(dst + i * ld + j, m);
  }
};

// kDropout false compiles the dropout out (the forwards' case whenever it is off: its code,
// inlined into every vector of every GEMM tile's epilogue, cost 2k of 16k TSC cycles per token fc2
// at mixer-cifar100's shapes even when skipped).
template <class V, class T, bool kRowBias, class U = T, bool kDropout = true> struct ResidualOut {
  const T* x;
  U* out;  // T, or the compute type for the post-norm form's sum before its LayerNorm
  int64_t ld, base;
  const typename V::scalar* bias;
  Dropout drop;  // a copy, for the same reason gemm_tile copies the epilogue
  int64_t ahead;  // elements from this block to the next one, whose x and out lines are prefetched (0: none)
  bool residual;  // false for the bare MLPs: out = Drop(C + bias)

  void operator()(int i, int j, V v, typename V::Mask m) const {
    const int64_t at = i * ld + j;
    // This call touches one vector of the block; the same vector of the next block is fetched
    // now, so the next LayerNorm pass and output stores find their lines in L2 instead of DRAM.
    if (ahead) {
      __builtin_prefetch(x + at + ahead, 0, 2);
      __builtin_prefetch(out + at + ahead, 1, 2);
    }
    V z = add_bias<kRowBias>(v, bias, i, j, m);
    if (kDropout && drop.enabled) z = z * drop.template factor<V>(uint64_t(base + at));
    store_as(out + at, residual ? load_as(x + at, m) + z : z, m);
  }
};

// gemm(epi) with the epilogue `epi`, or with it compiled without dropout when that is off.
template <class V, class T, bool kRowBias, class U, class Gemm>
inline void run_closing(const ResidualOut<V, T, kRowBias, U>& epi, Gemm&& gemm) {
  if (epi.drop.enabled) gemm(epi);
  else gemm(ResidualOut<V, T, kRowBias, U, false>{epi.x, epi.out, epi.ld, epi.base, epi.bias, epi.drop, epi.ahead, epi.residual});
}

// rows x cols values from src (row stride src_ld) to dst (row stride dst_ld).
template <class S> inline void copy_rows(const S* src, int64_t src_ld, S* dst, int64_t dst_ld, int rows, int cols) {
  for (int r = 0; r < rows; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, sizeof(S) * size_t(cols));
}

// n values of the storage type as the compute type: in place when they already are, else in buf.
template <class V, class T, class S = typename V::scalar>
inline const S* as_compute(const T* x, int64_t n, S* buf) {
  if constexpr (std::is_same_v<T, S>) {
    return x;
  } else {
    for (int64_t i = 0; i < n; i += kLanes) {
      const auto m = V::mask(int(imin64(kLanes, n - i)));
      load_as(x + i, m).store(buf + i, m);
    }
    return buf;
  }
}

// The first GEMM's operand: LN(X) (rows of length n, statistics to mean/rstd if given) in the
// Block form; X itself in the forms without a LayerNorm in front.
template <class V, class T, class S = typename V::scalar>
inline const S* mlp_input(const MixingArgs<T>& a, const T* x, int rows, int n, S* buf, S* mean = nullptr,
                          S* rstd = nullptr) {
  if (a.form != MixingForm::Block) return as_compute<V>(x, int64_t(rows) * n, buf);
  normalize_rows<V>(x, rows, n, a.eps, a.ln_w, a.ln_b, buf, mean, rstd);
  return buf;
}

// mlp_input's rows, written strip by strip: columns [s*64, s*64 + 64) of row r go to
// dst[(s * rows + r) * 64 ...] (a narrower last strip keeps the row stride 64).
template <class V, class T, class S = typename V::scalar>
inline void mlp_input_strips(const MixingArgs<T>& a, const T* x, int rows, int n, S* dst) {
  const bool ln = a.form == MixingForm::Block;
  alignas(64) S mu[kStatRows], rs[kStatRows];
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + int64_t(r) * n;
    if (ln && r % kStatRows == 0) rows_stats<V>(xr, imin(kStatRows, rows - r), n, a.eps, mu, rs);
    const S mean = ln ? mu[r % kStatRows] : S(0), rstd = ln ? rs[r % kStatRows] : S(1);
    for (int c0 = 0; c0 < n; c0 += kStripCols) {
      const int w = imin(kStripCols, n - c0);
      S* y = dst + (int64_t(c0 / kStripCols) * rows + r) * kStripCols;
      if (ln) row_normalize<V>(xr + c0, w, mean, rstd, a.ln_w + c0, a.ln_b + c0, y);
      else
        for (int j = 0; j < w; j += kLanes) {
          const auto m = V::mask(w - j);
          load_as(xr + c0 + j, m).store(y + j, m);
        }
    }
  }
}

// dX from dU = dL/d(first GEMM operand): through the LayerNorm plus the residual's G (Block), or
// dU itself (BareMlp).
template <class V, class T, class S = typename V::scalar>
inline void mlp_input_grad(const MixingArgs<T>& a, const T* x, const S* du, const T* g, int rows, int n,
                           const S* mean, const S* rstd, const GradPartials<S>& gp, T* dx) {
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * n;
    if (a.form == MixingForm::BareMlp) {
      for (int j = 0; j < n; j += kLanes) {
        const auto m = V::mask(n - j);
        store_as(dx + o + j, V::load(du + o + j, m), m);
      }
    } else {
      row_layernorm_backward_residual<V>(x + o, du + o, g + o, n, a.ln_w, mean[r], rstd[r], gp.ln_w, gp.ln_b, dx + o);
    }
  }
}

// Column sums of a (rows x cols) block, added to acc.
template <class V, class S = typename V::scalar>
inline void add_column_sums(const S* src, int rows, int cols, S* acc) {
  for (int j = 0; j < cols; j += kLanes) {
    const auto m = V::mask(cols - j);
    V s = V::load(acc + j, m);
    for (int i = 0; i < rows; ++i) s = s + V::load(src + int64_t(i) * cols + j, m);
    s.store(acc + j, m);
  }
}

// The forward runs the token MLP one strip of kStripCols channels at a time: channels are
// independent once LayerNorm has made U, so A's strip (H x 64) goes from fc1 through GELU to fc2
// while it is in L1, and LayerNorm writes U strip by strip (P x 64 contiguous) so that fc1's
// row tiles find their B strip in L1 instead of streaming it from L2 once per tile.
static_assert(kStripCols == kStripWidth, "token strips are GEMM column strips");
// The forward's steps per sample: input(x) makes U's strips, fc1(s, w, epilogue) runs the first
// GEMM on strip s (w columns) into H, fc2(w, epilogue) the second on GELU(H).
template <class T, class Input, class Fc1, class Fc2>
void token_forward_strips(const MixingArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* act, Input&& input, Fc1&& fc1,
                          Fc2&& fc2) {
  using V = Vec<compute_t<T>>;
  const int P = a.patches, D = a.dim;
  const Dropout drop = make_dropout(a);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * P * D;
    const T* x = a.x + base;
    T* out = a.out + base;
    input(x);
    for (int s = 0; s < column_strips(D); ++s) {
      const int c0 = s * kStripCols, w = imin(kStripCols, D - c0);
      fc1(s, w, StoreBiased<V, true>{act, kStripCols, a.b1});  // H = W1 U + b1
      run_closing(ResidualOut<V, T, true>{x + c0, out + c0, D, base + c0, a.b2, drop, prefetch_ahead(a, P),  // X + Drop(W2 A + b2)
                                          a.form == MixingForm::Block},
                  [&](const auto& epi) { fc2(w, epi); });
    }
  }
}

#if defined(MK_BF16_DOT)
// mlp_input_strips' values, rounded to bf16, as pair strips (gemm_bf16.h's B layout): pair row p
// of strip s holds rows 2p and 2p + 1 of U's columns [64 s, 64 s + 64), zero past n and in the pad
// row of an odd row count. One pass from X to the GEMM operand: no fp32 U is written.
template <class T>
inline void mlp_input_pair_strips(const MixingArgs<T>& a, const T* x, int rows, int n, bf16* dst) {
  using V = Vec512;
  static_assert(kStatRows % 2 == 0, "a pair's rows share one block of statistics");
  const bool ln = a.form == MixingForm::Block;
  const int K2 = depth_pairs(rows);
  alignas(64) float mu[kStatRows], rs[kStatRows];
  for (int p = 0; p < K2; ++p) {
    const int r = 2 * p, i = r % kStatRows;
    const bool has_odd = r + 1 < rows;
    if (ln && i == 0) rows_stats<V>(x + int64_t(r) * n, imin(kStatRows, rows - r), n, a.eps, mu, rs);
    const T* x0 = x + int64_t(r) * n;
    const V mu0 = V::set1(ln ? mu[i] : 0.f), rs0 = V::set1(ln ? rs[i] : 1.f);
    const V mu1 = V::set1(ln && has_odd ? mu[i + 1] : 0.f), rs1 = V::set1(ln && has_odd ? rs[i + 1] : 1.f);
    for (int c = 0; c < n; c += kLanes) {
      const auto m = V::mask(n - c);
      V v0 = (load_as(x0 + c, m) - mu0) * rs0, v1 = has_odd ? (load_as(x0 + n + c, m) - mu1) * rs1 : V::zero();
      if (ln) {
        const V w = V::load(a.ln_w + c, m), b = V::load(a.ln_b + c, m);
        v0 = fmadd(v0, w, b);
        v1 = has_odd ? fmadd(v1, w, b) : v1;
      }
      _mm512_storeu_si512(dst + (int64_t(c / kStripCols) * K2 + p) * kPairStripElems + 2 * (c % kStripCols),
                          bf16_pairs(v0.keep(m).v, v1.keep(m).v));
    }
    for (int c = ceil_div(n, kLanes) * kLanes; c % kStripCols; c += kLanes)  // the last strip's columns past n
      _mm512_storeu_si512(dst + (int64_t(c / kStripCols) * K2 + p) * kPairStripElems + 2 * (c % kStripCols),
                          _mm512_setzero_si512());
  }
}
#endif

template <class T>
void token_mixing_forward(const MixingArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int P = a.patches, D = a.dim, H = a.hidden;
  S* u = scratch;                          // strips x P x kStripCols
  S* act = u + strip_packed_elems(P, D);  // H x kStripCols
#if defined(MK_BF16_DOT)
  // bf16 dot products: U and GELU(H) are rounded to bf16 pairs as they are made (where the
  // reference under autocast rounds them too), W1 and W2 are the bf16 A operands.
  if constexpr (std::is_same_v<T, bf16>)
    if (a.fc1_dot) {
      const int P2 = depth_pairs(P), H2 = depth_pairs(H);
      bf16* u_pairs = reinterpret_cast<bf16*>(u);  // strips x P2 pair rows: half of u's floats
      bf16* act_pairs = reinterpret_cast<bf16*>(act + size_t(H) * kStripCols);
      return token_forward_strips(
          a, b0, b1, act, [&](const T* x) { mlp_input_pair_strips(a, x, P, D, u_pairs); },
          [&](int s, int w, const auto& epi) {
            gemm_bf16(H, w, P2, a.fc1_dot, 2 * P2, u_pairs + int64_t(s) * P2 * kPairStripElems, epi);
          },
          [&](int w, const auto& epi) {
            gelu_bf16_pairs(act, kStripCols, H, w, a.tanh_gelu, act_pairs);
            gemm_bf16(P, w, H2, a.fc2_dot, 2 * H2, act_pairs, epi);
          });
    }
#endif
  // W1(t, p) = w1t[p H + t], W2(p, t) = w2t[t P + p]: column-major views, no transposes.
  token_forward_strips(
      a, b0, b1, act, [&](const T* x) { mlp_input_strips<V>(a, x, P, D, u); },
      [&](int s, int w, const auto& epi) { gemm<V>(H, w, P, a.w1t, 1, H, u + int64_t(s) * P * kStripCols, kStripCols, epi); },
      [&](int w, const auto& epi) {
        if (w == kStripCols) gelu_inplace(act, (S*)nullptr, int64_t(H) * kStripCols, a.tanh_gelu);
        else for (int t = 0; t < H; ++t) gelu_inplace(act + t * kStripCols, (S*)nullptr, w, a.tanh_gelu);  // not the unset lanes
        gemm<V>(P, w, H, a.w2t, 1, P, act, kStripCols, epi);
      });
}

template <class T>
void token_mixing_backward(const MixingArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch,
                           const GradPartials<compute_t<T>>& g) {
  using S = compute_t<T>;
  using V = Vec<S>;
  using M = typename V::Mask;
  const int P = a.patches, D = a.dim, H = a.hidden;
  const Dropout drop = make_dropout(a);
  S* u = scratch;             // P x D   LN(X)
  S* dz = u + P * D;          // P x D   G * mask
  S* du = dz + P * D;         // P x D   dL/dU
  S* dh = du + P * D;         // H x D   dL/dH
  S* act_t = dh + H * D;      // D x H   A^T
  S* dh_t = act_t + D * H;    // D x H   GELU'(H)^T, then dH^T
  S* mean = dh_t + D * H;     // P
  S* rstd = mean + P;         // P
  const auto gelu_grad = [&](int i, int j, V v, M m) {  // dH^T = (dZ^T W2) * GELU'(H)^T
    S* p = dh_t + i * H + j;
    (v * V::load(p, m)).store(p, m);
  };
  // bf16 dot products (token_dot_scratch after the fp32 tiles): every GEMM operand rounded to bf16
  // as autocast's reference rounds it, fp32 accumulation. Transposed operands (U^T, dZ^T) are read
  // as pair strips over the patches (gemm_bf16_tn); W1^T and W2 come as pair strips, W1^T also as
  // rows (MixingArgs::w1t_dot, w2_dot, w1_dot).
  [[maybe_unused]] const bool dot = std::is_same_v<T, bf16> && a.w2_dot;
  [[maybe_unused]] const int P2 = depth_pairs(P), D2 = depth_pairs(D), H2 = depth_pairs(H);
  [[maybe_unused]] bf16* const u_cols = reinterpret_cast<bf16*>(rstd + P);
  [[maybe_unused]] bf16* const dz_cols = u_cols + size_t(P2) * column_strips(D) * 2 * kStripCols;
  [[maybe_unused]] bf16* const dh_cols = dz_cols + size_t(P2) * column_strips(D) * 2 * kStripCols;  // dH over H
  [[maybe_unused]] bf16* const act_cols = dh_cols + size_t(H2) * column_strips(D) * 2 * kStripCols;  // A^T over D
  [[maybe_unused]] bf16* const dht_cols = act_cols + size_t(D2) * column_strips(H) * 2 * kStripCols;  // dH^T over D
  [[maybe_unused]] bf16* const rows = dht_cols + size_t(D2) * column_strips(H) * 2 * kStripCols;  // P x 2 D2: dZ, then U
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * P * D;
    const T* x = a.x + base;
    const T* gout = a.grad_out + base;
    const S* ux = mlp_input<V>(a, x, P, D, u, mean, rstd);
    // H^T = U^T W1^T (D x H): U^T(d, p) = ux[p D + d].
    const StoreBiased<V, false> biased{act_t, H, a.b1};
#if defined(MK_BF16_DOT)
    if (dot) {
      pack_bf16_pair_strips(ux, D, P, D, u_cols);
      gemm_bf16_tn(D, H, P2, u_cols, a.w1t_dot, biased);
    } else
#endif
      gemm<V>(D, H, P, ux, 1, D, a.w1t, H, biased);
    gelu_inplace(act_t, dh_t, int64_t(D) * H, a.tanh_gelu);
    for (int p = 0; p < P; ++p) {
      S rowsum = 0;
      for (int d = 0; d < D; d += kLanes) {
        const M m = V::mask(D - d);
        V v = load_as(gout + p * D + d, m);
        if (drop.enabled) v = v * drop.factor<V>(uint64_t(base + int64_t(p) * D + d)).keep(m);
        v.store(dz + p * D + d, m);
        rowsum += v.reduce_add();
      }
      g.b2[p] += rowsum;
    }
#if defined(MK_BF16_DOT)
    if (dot) {
      pack_bf16_rows(dz, D, P, D, rows);
      pack_bf16_pair_strips(act_t, H, D, H, act_cols);
      gemm_bf16(P, H, D2, rows, 2 * D2, act_cols, AccumulateTo<V>{g.w2, H});  // dW2 += dZ A^T
      pack_bf16_pair_strips(dz, D, P, D, dz_cols);
      gemm_bf16_tn(D, H, P2, dz_cols, a.w2_dot, gelu_grad);
      add_column_sums<V>(dh_t, D, H, g.b1);
      pack_bf16_rows(ux, D, P, D, rows);
      pack_bf16_pair_strips(dh_t, H, D, H, dht_cols);
      gemm_bf16(P, H, D2, rows, 2 * D2, dht_cols, AccumulateTo<V>{g.w1, H});  // dW1^T += U dH^T (P x H)
      transpose(dh_t, D, H, dh);
      pack_bf16_pair_strips(dh, D, H, D, dh_cols);
      gemm_bf16(P, D, H2, a.w1_dot, 2 * H2, dh_cols, StoreTo<V>{du, D});  // dU = W1^T dH
      mlp_input_grad<V>(a, x, du, gout, P, D, mean, rstd, g, a.out + base);
      continue;
    }
#endif
    gemm<V>(P, H, D, dz, D, 1, act_t, H, AccumulateTo<V>{g.w2, H});  // dW2 += dZ A^T
    // dZ^T(d, p) = dz[p D + d].
    gemm<V>(D, H, P, dz, 1, D, a.w2, H, gelu_grad);
    add_column_sums<V>(dh_t, D, H, g.b1);
    gemm<V>(P, H, D, ux, D, 1, dh_t, H, AccumulateTo<V>{g.w1, H});  // dW1^T += U dH^T (P x H)
    transpose(dh_t, D, H, dh);
    // dU = W1^T dH: W1^T(p, t) = w1[t P + p].
    gemm<V>(P, D, H, a.w1, 1, P, dh, D, StoreTo<V>{du, D});
    mlp_input_grad<V>(a, x, du, gout, P, D, mean, rstd, g, a.out + base);
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
