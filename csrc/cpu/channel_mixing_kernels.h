// Channel mixing on blocks of R rows (tokens) of the (B*P, D) activation matrix, H = channel_hidden:
//   U = LN(X)    A = GELU(U W1^T + b1) (R x H)    out = X + Drop(A W2^T + b2)
// Backward recomputes U, A = GELU(H) from H (saved by a training step's forward, else recomputed
// by a GEMM) and regenerates the dropout mask:
//   dZ = G * mask                 dW2 += dZ^T A     db2 += colsum(dZ)
//   dH = (dZ W2) * GELU'(H)       dW1 += dH^T U     db1 += colsum(dH)
//   dU = dH W1                    dX = G + LN^T(dU)
// Every product maps onto gemm() with strided A views, so nothing is transposed per block.
// The bare form (channel_mlp) drops LN and residual: U = X, out = Drop(A W2^T + b2), dX = dU.
// The post-norm form (channel_mixing_postnorm, FNet's feed-forward sub-layer) normalizes after the
// residual instead of before the MLP:
//   A = GELU(X W1^T + b1)    Z = X + Drop(A W2^T + b2)    out = LN(Z)
// A training step's forward saves Z as well as H (two planes, channel_saved_cols); without them the
// backward recomputes both (two GEMMs):
//   dZ = LN^T(G), then the bare form's backward with G := dZ, and dX = dZ + dU.
#pragma once
#include "token_mixing_kernels.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

// The MLP's backward on one block of R rows, given dZ = dL/d(A W2^T + b2) (dropout mask applied),
// A, GELU'(H) in dh and the first GEMM's operand U: the four parameter gradients, dH (in dh),
// and dU = dH W1 handed to the epilogue `emit_du`. `dot`: channel_dot_scratch's room for the bf16
// operands when the args carry the bf16-dot backward's weights (else unused).
template <class V, class T, class Epi, class S = typename V::scalar>
inline void channel_mlp_backward_block(const MixingArgs<T>& a, int R, const S* dz, const S* act, S* dh, const S* u,
                                       const GradPartials<S>& g, bf16* dot, Epi&& emit_du) {
  using M = typename V::Mask;
  const int D = a.dim, H = a.hidden;
  const auto gelu_grad = [&](int i, int j, V v, M m) {  // dH = (dZ W2) * GELU'(H)
    S* p = dh + i * H + j;
    (v * V::load(p, m)).store(p, m);
  };
  add_column_sums<V>(dz, R, D, g.b2);
#if defined(MK_BF16_DOT)
  // bf16 dot products, fp32 accumulation: dZ, A, dH and U are rounded to bf16 as the reference
  // under autocast rounds them (its backward GEMMs take bf16 operands), W1 and W2 come as pair
  // strips. The weight gradients read dZ^T and dH^T as pair strips over the block's rows
  // (gemm_bf16_tn), so nothing is transposed; the bias gradients sum the fp32 values. Also for
  // fp32 x with bf16 weights (the post-norm form under autocast).
  if constexpr (!std::is_same_v<T, double>)
    if (a.w2_dot) {
      const int R2 = depth_pairs(R), D2 = depth_pairs(D), H2 = depth_pairs(H);
      bf16* dz_cols = dot;  // pair strips over rows: R2 x (D or H) pairs each
      bf16* u_cols = dz_cols + size_t(R2) * column_strips(D) * kPairStripElems;
      bf16* act_cols = u_cols + size_t(R2) * column_strips(D) * kPairStripElems;
      bf16* dh_cols = act_cols + size_t(R2) * column_strips(H) * kPairStripElems;
      bf16* dz_rows = dh_cols + size_t(R2) * column_strips(H) * kPairStripElems;  // R x 2 D2
      bf16* dh_rows = dz_rows + size_t(R) * 2 * D2;                                 // R x 2 H2
      pack_bf16_pair_strips(dz, D, R, D, dz_cols);
      pack_bf16_pair_strips(act, H, R, H, act_cols);
      gemm_bf16_tn(D, H, R2, dz_cols, act_cols, AccumulateTo<V>{g.w2, H});  // dW2 += dZ^T A
      pack_bf16_rows(dz, D, R, D, dz_rows);
      gemm_bf16(R, H, D2, dz_rows, 2 * D2, a.w2_dot, gelu_grad);
      add_column_sums<V>(dh, R, H, g.b1);
      pack_bf16_pair_strips(dh, H, R, H, dh_cols);
      pack_bf16_pair_strips(u, D, R, D, u_cols);
      gemm_bf16_tn(H, D, R2, dh_cols, u_cols, AccumulateTo<V>{g.w1, D});  // dW1 += dH^T U
      pack_bf16_rows(dh, H, R, H, dh_rows);
      gemm_bf16(R, D, H2, dh_rows, 2 * H2, a.w1_dot, emit_du);  // dU = dH W1
      return;
    }
#endif
  gemm<V>(D, H, R, dz, 1, D, act, H, AccumulateTo<V>{g.w2, H});  // dW2 += dZ^T A
  gemm<V>(R, H, D, dz, D, 1, a.w2, H, gelu_grad);
  add_column_sums<V>(dh, R, H, g.b1);
  gemm<V>(H, D, R, dh, 1, H, u, D, AccumulateTo<V>{g.w1, D});  // dW1 += dH^T U
  gemm<V>(R, D, H, dh, H, 1, a.w1, D, emit_du);                // dU = dH W1
}

// The forwards' fc2, C (R x D) = A W2^T into `epi`. W2^T comes packed in 64-column strips where D
// is a multiple of 64: rows D floats apart can then fall into few L1 sets (D a multiple of 256),
// and a contiguous strip stays in L1. Other D read it row-major, where gemm may split N into
// 3-vector strips (96 = 48 + 48), which packed strips would have to cross: channel_mlp forward
// at D = H = 96 ran 1.14-1.16x, and at D = 100, H = 37 1.18x, of packed (C++ A/B, bit-identical).
template <class V, class T, class Epi, class S = typename V::scalar>
inline void fc2_forward_gemm(const MixingArgs<T>& a, int R, const S* act, const Epi& epi) {
  const int D = a.dim, H = a.hidden;
  if (D % kStripCols) gemm<V>(R, D, H, act, H, 1, a.w2t, D, epi);
  else gemm<V>(R, D, H, act, H, 1, a.w2t_strips, kStripCols, epi, int64_t(H) * kStripCols);
}

#if defined(MK_BF16_DOT)
// mlp_input's rows, rounded to bf16, as gemm_bf16.h's A rows (2 depth_pairs(n) apart, the pad
// zero): one pass from X to the GEMM operand, no fp32 U written.
template <class T>
inline void mlp_input_bf16_rows(const MixingArgs<T>& a, const T* x, int rows, int n, bf16* dst) {
  using V = Vec512;
  const bool ln = a.form == MixingForm::Block;
  const int ldd = 2 * depth_pairs(n);
  alignas(64) float mu[kStatRows], rs[kStatRows];
  for (int r = 0; r < rows; ++r) {
    const T* xr = x + int64_t(r) * n;
    bf16* y = dst + int64_t(r) * ldd;
    if (ln && r % kStatRows == 0) rows_stats<V>(xr, imin(kStatRows, rows - r), n, a.eps, mu, rs);
    const V vmu = V::set1(ln ? mu[r % kStatRows] : 0.f), vrs = V::set1(ln ? rs[r % kStatRows] : 1.f);
    auto value = [&](int c, __mmask16 m) {  // 16 values of row r from column c, zero past n
      const V v = (load_as(xr + c, m) - vmu) * vrs;
      return (ln ? fmadd(v, V::load(a.ln_w + c, m), V::load(a.ln_b + c, m)) : v).keep(m).v;
    };
    int k = 0;
    for (const __mmask16 all = V::mask(kLanes); k + 2 * kLanes <= n; k += 2 * kLanes)
      _mm512_storeu_si512(y + k, bf16_concat(value(k, all), value(k + kLanes, all)));
    for (; k < ldd; k += 2 * kLanes)
      _mm512_mask_storeu_epi16(y + k, mask32(ldd - k), bf16_concat(value(k, mask16(n - k)), value(k + kLanes, mask16(n - k - kLanes))));
  }
}
#endif

// The post-norm form's forward per block of rows: fc1(x, R, epilogue) and fc2(R, epilogue) as in
// channel_forward_rows (fc1 on X itself: no LN before it), Z into z (R x D, free once fc1 is done).
template <class T, class Fc1, class Fc2>
void channel_postnorm_rows(const MixingArgs<T>& a, int64_t blk0, int64_t blk1, compute_t<T>* z, compute_t<T>* act,
                           Fc1&& fc1, Fc2&& fc2) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int D = a.dim, H = a.hidden;
  const int64_t rows = a.batch * a.patches;
  const Dropout drop = make_dropout(a);
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t r0 = blk * kChannelRowBlock;
    const int R = int(imin64(kChannelRowBlock, rows - r0));
    const T* x = a.x + r0 * D;
    S* zr = a.saved ? a.saved + rows * H + r0 * D : z;  // a training step's Z goes to its plane
    fc1(x, R, StoreBiased<V, false>{act, H, a.b1});
    if (a.saved) std::memcpy(a.saved + r0 * H, act, sizeof(S) * size_t(R) * H);
    fc2(R, ResidualOut<V, T, false, S>{x, zr, D, r0 * D, a.b2, drop, int64_t(R) * D, true});
    normalize_rows<V>(zr, R, D, a.eps, a.ln_w, a.ln_b, a.out + r0 * D);
  }
}

template <class T>
void channel_postnorm_backward(const MixingArgs<T>& a, int64_t blk0, int64_t blk1, compute_t<T>* scratch,
                               const GradPartials<compute_t<T>>& g) {
  using S = compute_t<T>;
  using V = Vec<S>;
  using M = typename V::Mask;
  const int D = a.dim, H = a.hidden;
  const int64_t rows = a.batch * a.patches;
  const Dropout drop = make_dropout(a);
  constexpr int RB = kChannelBackwardRows;
  S* u = scratch;          // R x D   X in the compute type
  S* gs = u + RB * D;      // R x D   G in the compute type
  S* z = gs + RB * D;      // R x D   Z
  S* dz = z + RB * D;      // R x D   dL/dZ
  S* dzm = dz + RB * D;    // R x D   dZ * mask
  S* act = dzm + RB * D;   // R x H   A
  S* dh = act + RB * H;    // R x H   GELU'(H), then dH
  bf16* dot = reinterpret_cast<bf16*>(dh + RB * H);  // channel_dot_scratch
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t r0 = blk * RB;
    const int R = int(imin64(RB, rows - r0));
    const T* x = a.x + r0 * D;
    const S* ux = as_compute<V>(x, int64_t(R) * D, u);
    const S* gout = as_compute<V>(a.grad_out + r0 * D, int64_t(R) * D, gs);
    const S* zr = z;  // Z's rows: read in place from `saved` when it holds them
    if (a.saved) {
      gelu(a.saved + r0 * H, act, dh, int64_t(R) * H, a.tanh_gelu);
      zr = a.saved + rows * H + r0 * D;
    } else {
      gemm<V>(R, H, D, ux, D, 1, a.w1t, H, StoreBiased<V, false>{act, H, a.b1});
      gelu_inplace(act, dh, int64_t(R) * H, a.tanh_gelu);
      gemm<V>(R, D, H, act, H, 1, a.w2t, D, ResidualOut<V, T, false, S>{x, z, D, r0 * D, a.b2, drop, 0, true});
    }
    S* dzm_rows = drop.enabled ? dzm : dz;  // dZ * mask
    for (int r = 0; r < R; ++r) {
      const int64_t o = int64_t(r) * D;
      S mean, rstd;
      row_stats<V>(zr + o, D, a.eps, &mean, &rstd);
      row_layernorm_backward<V>(zr + o, gout + o, D, a.ln_w, mean, rstd, g.ln_w, g.ln_b, [&](int j, V v, M m) {
        v.store(dz + o + j, m);
        if (drop.enabled) (v * drop.factor<V>(uint64_t((r0 + r) * D + j))).store(dzm + o + j, m);
      });
    }
    T* dx = a.out + r0 * D;
    channel_mlp_backward_block<V>(a, R, dzm_rows, act, dh, ux, g, dot, [&](int i, int j, V v, M m) {  // dX = dZ + dU
      store_as(dx + i * D + j, v + V::load(dz + i * D + j, m), m);
    });
  }
}

// The forward's steps per block of rows (Block and BareMlp forms): fc1(X, R, epilogue) runs the
// first GEMM on R rows of X (after their LayerNorm) into H, fc2(R, epilogue) the second on GELU(H).
template <class T, class Fc1, class Fc2>
void channel_forward_rows(const MixingArgs<T>& a, int64_t blk0, int64_t blk1, compute_t<T>* act, Fc1&& fc1, Fc2&& fc2) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int D = a.dim, H = a.hidden;
  const int64_t rows = a.batch * a.patches;
  const Dropout drop = make_dropout(a);
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t r0 = blk * kChannelRowBlock;
    const int R = int(imin64(kChannelRowBlock, rows - r0));
    const T* x = a.x + r0 * D;
    T* out = a.out + r0 * D;
    fc1(x, R, StoreBiased<V, false>{act, H, a.b1});  // H = U W1^T + b1
    if (a.saved) std::memcpy(a.saved + r0 * H, act, sizeof(S) * size_t(R) * H);
    run_closing(ResidualOut<V, T, false>{x, out, D, r0 * D, a.b2, drop, prefetch_ahead(a, R), a.form == MixingForm::Block},
                [&](const auto& epi) { fc2(R, epi); });
  }
}


template <class T>
void channel_mixing_forward(const MixingArgs<T>& a, int64_t blk0, int64_t blk1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int D = a.dim, H = a.hidden;
  S* u = scratch;                       // R x D   fc1's operand (post-norm form: then Z)
  S* act = u + kChannelRowBlock * D;    // R x H
  const auto run = [&](auto&& fc1, auto&& fc2) {  // the form's loop over row blocks
    if (a.form == MixingForm::PostNorm) channel_postnorm_rows(a, blk0, blk1, u, act, fc1, fc2);
    else channel_forward_rows(a, blk0, blk1, act, fc1, fc2);
  };
#if defined(MK_BF16_DOT)
  // bf16 dot products: fc1's operand (LN(X) in the Block form, else X) and GELU(H) are rounded to
  // bf16 rows as they are made (as the reference under autocast rounds them), W1^T and W2^T are
  // bf16 pair strips. Without a LayerNorm and with an even D, bf16 X's rows are that operand as
  // they are. A training forward saves H = U W1^T + b1 of these products. fp32 x comes with bf16
  // weights in the post-norm form under autocast: its residual and LayerNorm stay fp32.
  if constexpr (!std::is_same_v<T, double>)
    if (a.fc1_dot) {
      const int D2 = depth_pairs(D), H2 = depth_pairs(H);
      const bool x_as_is = std::is_same_v<T, bf16> && a.form != MixingForm::Block && D % 2 == 0;
      bf16* u_rows = reinterpret_cast<bf16*>(u);  // R x 2 D2: fits in u's R x D floats
      bf16* act_rows = reinterpret_cast<bf16*>(act + kChannelRowBlock * H);  // R x 2 H2
      return run(
          [&](const T* x, int R, const auto& epi) {
            const bf16* rows = u_rows;
            if constexpr (std::is_same_v<T, bf16>) rows = x_as_is ? x : u_rows;
            if (!x_as_is) mlp_input_bf16_rows(a, x, R, D, u_rows);
            gemm_bf16(R, H, D2, rows, 2 * D2, a.fc1_dot, epi);
          },
          [&](int R, const auto& epi) {
            gelu_bf16_rows(act, H, R, H, a.tanh_gelu, act_rows);
            gemm_bf16(R, D, H2, act_rows, 2 * H2, a.fc2_dot, epi);
          });
    }
#endif
  run([&](const T* x, int R, const auto& epi) { gemm<V>(R, H, D, mlp_input<V>(a, x, R, D, u), D, 1, a.w1t, H, epi); },
      [&](int R, const auto& epi) {
        gelu_inplace(act, (S*)nullptr, int64_t(R) * H, a.tanh_gelu);
        fc2_forward_gemm<V>(a, R, act, epi);
      });
}

template <class T>
void channel_mixing_backward(const MixingArgs<T>& a, int64_t blk0, int64_t blk1, compute_t<T>* scratch,
                             const GradPartials<compute_t<T>>& g) {
  if (a.form == MixingForm::PostNorm) return channel_postnorm_backward(a, blk0, blk1, scratch, g);
  using S = compute_t<T>;
  using V = Vec<S>;
  using M = typename V::Mask;
  const int D = a.dim, H = a.hidden;
  const int64_t rows = a.batch * a.patches;
  const Dropout drop = make_dropout(a);
  constexpr int RB = kChannelBackwardRows;
  S* u = scratch;          // R x D   LN(X)
  S* dz = u + RB * D;      // R x D   G * mask
  S* du = dz + RB * D;     // R x D   dL/dU
  S* act = du + RB * D;    // R x H   A
  S* dh = act + RB * H;    // R x H   GELU'(H), then dH
  S* mean = dh + RB * H;   // R
  S* rstd = mean + RB;     // R
  bf16* dot = reinterpret_cast<bf16*>(rstd + RB);  // channel_dot_scratch
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t r0 = blk * RB;
    const int R = int(imin64(RB, rows - r0));
    const T* x = a.x + r0 * D;
    const T* gout = a.grad_out + r0 * D;
    const S* ux = mlp_input<V>(a, x, R, D, u, mean, rstd);
    const S* dzr = dz;  // G itself where there is no mask to apply and no type to convert
    if constexpr (std::is_same_v<T, S>)
      if (!drop.enabled) dzr = gout;
    for (int r = 0; r < R && dzr == dz; ++r) {
      for (int d = 0; d < D; d += kLanes) {
        const M m = V::mask(D - d);
        V v = load_as(gout + r * D + d, m);
        if (drop.enabled) v = v * drop.factor<V>(uint64_t((r0 + r) * D + d));
        v.store(dz + r * D + d, m);
      }
    }
    if (a.saved) {
      gelu(a.saved + r0 * H, act, dh, int64_t(R) * H, a.tanh_gelu);
    } else {
      gemm<V>(R, H, D, ux, D, 1, a.w1t, H, StoreBiased<V, false>{act, H, a.b1});
      gelu_inplace(act, dh, int64_t(R) * H, a.tanh_gelu);
    }
    T* dx = a.out + r0 * D;
    if (a.form == MixingForm::BareMlp) {  // dX = dU, stored straight from the last GEMM
      channel_mlp_backward_block<V>(a, R, dzr, act, dh, ux, g, dot, StoreTo<V, T>{dx, D});
    } else {
      channel_mlp_backward_block<V>(a, R, dzr, act, dh, ux, g, dot, StoreTo<V>{du, D});
      mlp_input_grad<V>(a, x, du, gout, R, D, mean, rstd, g, dx);
    }
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
