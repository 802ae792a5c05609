// Patch embedding (Conv2d with kernel = stride = patch), one image at a time. K = C p^2; Xp
// (P x K) holds the image's patches, one row each (layout: PatchArgs in mixing_params.h):
//   out = Xp W^T + b                       (P x D, the (B, P, D) layout the blocks read;
//                                           W^T comes packed in 64-column strips)
// Backward, from G = dL/d out, on a group of images stacked row-wise (Xp, G: rows = images * P):
//   dW += G^T Xp    db += colsum(G)    dXp = G W, scattered back onto the images (unless a.out is
//   null: images usually need no gradient, and dXp costs as much as the forward)
// The gather is one pass over the image into an L2-resident tile and the bias is added in the
// GEMM's epilogue; torch's equivalent (a permuted copy, then addmm, which first copies the bias
// into every output row) makes two more passes over memory.
#pragma once
#include "token_mixing_kernels.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

// f(offset in Xp, offset in the image) for each of an image's runs of p contiguous pixels (one
// patch row of one channel); non-overlapping patches tile the image, so the runs cover it once.
// Xp's rows are ld >= K apart.
template <class T, class F> inline void for_each_patch_run(const PatchArgs<T>& a, F&& f, int64_t ld = 0) {
  const int p = a.patch, gw = a.grid_w(), gh = a.height / p;
  if (!ld) ld = a.depth();
  for (int gy = 0; gy < gh; ++gy)
    for (int gx = 0; gx < gw; ++gx)
      for (int c = 0; c < a.channels; ++c)
        for (int i = 0; i < p; ++i)
          f(int64_t(gy * gw + gx) * ld + (c * p + i) * p, (int64_t(c) * a.height + gy * p + i) * a.width + gx * p);
}

template <class V, class T, class S = typename V::scalar>
inline void gather_patches(const PatchArgs<T>& a, const T* image, S* xp) {
  for_each_patch_run(a, [&](int64_t to, int64_t from) {
    for (int j = 0; j < a.patch; j += kLanes) {
      const auto m = V::mask(a.patch - j);
      load_as(image + from + j, m).store(xp + to + j, m);
    }
  });
}

template <class V, class T, class S = typename V::scalar>
inline void scatter_patches(const PatchArgs<T>& a, const S* xp, T* image) {
  for_each_patch_run(a, [&](int64_t from, int64_t to) {
    for (int j = 0; j < a.patch; j += kLanes) {
      const auto m = V::mask(a.patch - j);
      store_as(image + to + j, V::load(xp + from + j, m), m);
    }
  });
}

template <class T>
void patch_embed_forward(const PatchArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int P = a.patches(), K = a.depth(), D = a.dim;
  for (int64_t b = b0; b < b1; ++b) {
    T* out = a.out + b * P * D;
    const auto biased = [&](int i, int j, V v, typename V::Mask m) { store_as(out + i * D + j, v + V::load(a.bias + j, m), m); };
#if defined(MK_BF16_DOT)
    // bf16 dot products: the image's bf16 pixels are the GEMM's A operand as they are (rows of
    // Kp = K rounded up to even, the pad column zero), so the gather only copies them.
    if constexpr (std::is_same_v<T, bf16>)
      if (a.wt_dot) {
        const int Kp = 2 * depth_pairs(K);
        bf16* xp = reinterpret_cast<bf16*>(scratch);  // P x Kp: fits patch_scratch's P x K floats
        if (b == b0)
          for (int q = 0; q < P && Kp > K; ++q) xp[int64_t(q) * Kp + K] = bf16{0};
        const bf16* image = a.x + b * a.image_elems();
        for_each_patch_run(a, [&](int64_t to, int64_t from) {  // a masked vector per 16 pixels, not a memcpy call
          for (int j = 0; j < a.patch; j += kLanes) {
            const __mmask16 m = Vec512::mask(a.patch - j);
            _mm256_mask_storeu_epi16(xp + to + j, m, _mm256_maskz_loadu_epi16(m, image + from + j));
          }
        }, Kp);
        gemm_bf16(P, D, depth_pairs(K), xp, Kp, a.wt_dot, biased);
        continue;
      }
#endif
    S* xp = scratch;  // P x K
    gather_patches<V>(a, a.x + b * a.image_elems(), xp);
    gemm<V>(P, D, K, xp, K, 1, a.wt, kStripCols, biased, int64_t(K) * kStripCols);
  }
}

template <class T>
void patch_embed_backward(const PatchArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch,
                          const PatchGradPartials<compute_t<T>>& g) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int P = a.patches(), K = a.depth(), D = a.dim, group = patch_group(P);
  S* xp = scratch;                                          // rows x K
  S* dxp = xp + round_to_lanes(size_t(group) * P * K);      // rows x K
  S* gbuf = dxp + round_to_lanes(size_t(group) * P * K);    // rows x D, G in the compute type
  S* wp = gbuf + round_to_lanes(size_t(group) * P * D);      // W in strips: dXp's B, blocked without copies
  bool dot = false;
#if defined(MK_BF16_DOT)
  // bf16 dot products, fp32 accumulation (G and the pixels are bf16 values already, so the packing
  // rounds nothing): dW += G^T Xp from both as pair strips over the group's rows (gemm_bf16_tn),
  // dXp = G W from G's bf16 rows and W's pair strips. wp's room holds the bf16 operands.
  bf16 *g_cols = nullptr, *xp_cols = nullptr, *g_rows = nullptr;
  if constexpr (std::is_same_v<T, bf16>)
    if (a.w_dot) {
      const size_t pairs = size_t(depth_pairs(group * P));
      dot = true;
      g_cols = reinterpret_cast<bf16*>(wp);
      xp_cols = g_cols + pairs * column_strips(D) * kPairStripElems;
      g_rows = xp_cols + pairs * column_strips(K) * kPairStripElems;  // rows x 2 depth_pairs(D)
    }
#endif
  if (a.out && !dot) pack_strips(a.w, D, K, K, wp);
  for (int64_t b = b0; b < b1; b += group) {
    const int n = int(imin64(group, b1 - b)), rows = n * P;
    for (int i = 0; i < n; ++i) gather_patches<V>(a, a.x + (b + i) * a.image_elems(), xp + int64_t(i) * P * K);
    const S* gb = as_compute<V>(a.grad_out + b * P * D, int64_t(rows) * D, gbuf);  // images are consecutive rows
    add_column_sums<V>(gb, rows, D, g.bias);
#if defined(MK_BF16_DOT)
    if constexpr (std::is_same_v<T, bf16>)
      if (dot) {
        pack_bf16_pair_strips(gb, D, rows, D, g_cols);
        pack_bf16_pair_strips(xp, K, rows, K, xp_cols);
        gemm_bf16_tn(D, K, depth_pairs(rows), g_cols, xp_cols, AccumulateTo<V>{g.w, K});  // dW += G^T Xp
      }
#endif
    if (!dot) gemm<V>(D, K, rows, gb, 1, D, xp, K, AccumulateTo<V>{g.w, K});  // dW += G^T Xp
    if (!a.out) continue;
#if defined(MK_BF16_DOT)
    if constexpr (std::is_same_v<T, bf16>)
      if (dot) {
        pack_bf16_rows(gb, D, rows, D, g_rows);
        gemm_bf16(rows, K, depth_pairs(D), g_rows, 2 * depth_pairs(D), a.w_dot, StoreTo<V>{dxp, K});  // dXp = G W
      }
#endif
    if (!dot) gemm<V>(rows, K, D, gb, D, 1, wp, kStripCols, StoreTo<V>{dxp, K}, int64_t(D) * kStripCols);  // dXp = G W
    for (int i = 0; i < n; ++i) scatter_patches<V>(a, dxp + int64_t(i) * P * K, a.out + (b + i) * a.image_elems());
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
