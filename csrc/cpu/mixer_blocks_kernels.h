// Mixer blocks image by image (BlocksArgs, mixing_params.h): the ops mixer_blocks (tokens in,
// tokens out) and mixer_features (images in, pooled features out). One image's activation (P x D)
// stays in L2 from the patch embedding (or the first block's input) to the last block's output,
// instead of a round trip through memory and a fresh output tensor per op. Token mixing runs in
// place after the first block (each output element is written right after its residual is read),
// channel mixing always does. With pooling, the activation never leaves the thread's scratch:
//   features = mean over patches of LN(y) = w * mean(xhat) + b   (or mean(y) without the LN)
#pragma once
#include "channel_mixing_kernels.h"
#include "patch_embed_kernels.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

// out (n) = the mean over `rows` rows of y (row length n), after a LayerNorm if w is set; sum: n scratch.
template <class V, class T, class S = typename V::scalar>
inline void pool_rows(const T* y, int rows, int n, const S* w, const S* b, S eps, S* sum, T* out) {
  alignas(64) S mu[kStatRows], rs[kStatRows];
  for (int j = 0; j < n; j += kLanes) V::zero().store(sum + j, V::mask(n - j));
  for (int r0 = 0; r0 < rows; r0 += kStatRows) {
    const int nr = imin(kStatRows, rows - r0);
    if (w) rows_stats<V>(y + int64_t(r0) * n, nr, n, eps, mu, rs);
    for (int r = 0; r < nr; ++r) {
      const T* yr = y + int64_t(r0 + r) * n;
      const V vmu = V::set1(w ? mu[r] : S(0)), vrs = V::set1(w ? rs[r] : S(1));
      for (int j = 0; j < n; j += kLanes) {
        const auto m = V::mask(n - j);
        fmadd(load_as(yr + j, m) - vmu, vrs, V::load(sum + j, m)).store(sum + j, m);
      }
    }
  }
  const V inv = V::set1(S(1) / S(rows));
  for (int j = 0; j < n; j += kLanes) {
    const auto m = V::mask(n - j);
    const V mean = V::load(sum + j, m) * inv;
    store_as(out + j, w ? fmadd(mean, V::load(w + j, m), V::load(b + j, m)) : mean, m);
  }
}

template <class T>
void mixer_blocks_forward(const BlocksArgs<T>& a, int64_t b0, int64_t b1, compute_t<T>* scratch) {
  using S = compute_t<T>;
  using V = Vec<S>;
  const int P = a.patches, D = a.dim;
  const int64_t image = int64_t(P) * D, in_elems = a.stem ? a.stem->image_elems() : image;
  S* token_buf = scratch;
  S* channel_buf = token_buf + a.token_scratch;
  S* stem_buf = channel_buf + a.channel_scratch;
  S* own = stem_buf + a.stem_scratch;                // blocks_scratch(P, D)
  T* local = reinterpret_cast<T*>(own);             // the image's tokens when pooling
  S* sum = own + round_to_lanes(size_t(image));
  for (int64_t b = b0; b < b1; ++b) {
    T* y = a.pool ? local : a.out + b * image;
    const T* in = a.x + b * in_elems;
    if (a.stem) {  // each kernel sees a batch of one image: this one
      PatchArgs<T> s = *a.stem;
      s.x = in;
      s.out = y;
      patch_embed_forward(s, 0, 1, stem_buf);
      in = y;
    }
    for (int l = 0; l < a.depth; ++l) {
      MixingArgs<T> t = a.token[l], c = a.channel[l];
      t.batch = c.batch = 1;
      t.prefetch_next = c.prefetch_next = false;
      t.x = in;
      t.out = c.out = y;
      c.x = y;
      token_mixing_forward(t, 0, 1, token_buf);
      channel_mixing_forward(c, 0, channel_units(1, P, D), channel_buf);
      in = y;
    }
    if (a.pool) pool_rows<V>(in, P, D, a.norm_w, a.norm_b, a.eps, sum, a.out + b * D);
    else if (in != y) std::memcpy(y, in, sizeof(T) * size_t(image));  // no blocks, no stem
  }
}

}}}  // namespace mixerkern::cpu::MK_ISA
