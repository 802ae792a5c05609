// Counter-based dropout (bit-identical to mixerkern/ops/_dropout.py): element `idx` of a call
// with 64-bit `seed` is kept iff hash(seed, idx) < threshold = (1 - p) 2^32. No mask is stored;
// the backward pass regenerates it from the seed.
#pragma once
#include "vec.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

inline uint32_t fmix32(uint32_t h) {  // MurmurHash3 finalizer
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; return h ^ (h >> 16);
}

struct Dropout {
  bool enabled = false;
  uint64_t seed = 0;
  uint32_t threshold = 0;
  float scale = 1.f;  // 1 / (1 - p)

  uint32_t hash(uint64_t idx) const {
    uint32_t h = fmix32(uint32_t(idx) ^ uint32_t(seed));
    return fmix32(h ^ uint32_t(seed >> 32) ^ (uint32_t(idx >> 32) * 0x9e3779b9u));
  }
  // Per-lane factor for elements idx .. idx+15: scale where kept, 0 where dropped.
  template <class V> V factor(uint64_t idx) const;

#if defined(MK_AVX512)
  // The 16 lanes straddle a 2^32 boundary: rare, done lane by lane, and kept out of line so that
  // it does not bloat every GEMM epilogue that inlines factor().
  __attribute__((noinline)) Vec512 straddling_factor(uint64_t idx) const {
    alignas(64) float f[16];
    for (int i = 0; i < 16; ++i) f[i] = hash(idx + i) < threshold ? scale : 0.f;
    return Vec512::load(f);
  }
#endif
};

#if defined(MK_AVX512)
inline __m512i fmix32x16(__m512i h) {
  h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
  h = _mm512_mullo_epi32(h, _mm512_set1_epi32(int(0x85ebca6bu)));
  h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
  h = _mm512_mullo_epi32(h, _mm512_set1_epi32(int(0xc2b2ae35u)));
  return _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
}
template <> inline Vec512 Dropout::factor<Vec512>(uint64_t idx) const {
  const uint32_t lo = uint32_t(idx);
  if (__builtin_expect(lo > 0xffffffffu - 15u, 0)) return straddling_factor(idx);
  const __m512i lanes = _mm512_add_epi32(_mm512_set1_epi32(int(lo)),
                                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m512i h = fmix32x16(_mm512_xor_si512(lanes, _mm512_set1_epi32(int(uint32_t(seed)))));
  const uint32_t key = uint32_t(seed >> 32) ^ (uint32_t(idx >> 32) * 0x9e3779b9u);
  h = fmix32x16(_mm512_xor_si512(h, _mm512_set1_epi32(int(key))));
  const __mmask16 keep = _mm512_cmplt_epu32_mask(h, _mm512_set1_epi32(int(threshold)));
  return {_mm512_maskz_mov_ps(keep, _mm512_set1_ps(scale))};
}
#endif

// From any kernel-args struct with the dropout fields (MixingArgs, GatingArgs).
template <class Args> Dropout make_dropout(const Args& a) {
  Dropout d;
  d.enabled = a.dropout; d.seed = a.seed; d.threshold = a.keep_threshold; d.scale = a.keep_scale;
  return d;
}

template <class V> inline V Dropout::factor(uint64_t idx) const {
  V f;
  for (int i = 0; i < kLanes; ++i) f.v[i] = hash(idx + i) < threshold ? typename V::scalar(scale) : 0;
  return f;
}

}}}  // namespace mixerkern::cpu::MK_ISA
