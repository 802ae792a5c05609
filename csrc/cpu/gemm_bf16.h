// GEMM on bf16 operands with fp32 accumulation by AVX512-BF16's vdpbf16ps, for the bf16 forwards
// of the kernel tables built with MK_BF16_DOT (kernels_avx512bf16*.cpp). One vdpbf16ps does, for
// each of 16 fp32 lanes j,
//   acc[j] += a[2j+1] b[2j+1] + a[2j] b[2j]        (odd pair first; bf16 products are exact in fp32)
// so the depth K is consumed in pairs: A's two values (A(i,k), A(i,k+1)) are broadcast as one
// 32-bit word, and B is stored pair-interleaved, (B(k,j), B(k+1,j)) side by side. Per pair the
// MR x NV register tile does the work of two fp32 k steps in one instruction: twice the FLOPs of
// the fp32 GEMM (gemm.h) per cycle, on half the operand bytes.
//
// Layouts (K is padded with a zero to even Kp; K2 = Kp / 2 = depth_pairs(K)):
//   A: row-major bf16, row stride lda (even), the pad column zero (pack_bf16_rows).
//   B: pair strips of 64 columns, each K2 x 64 pairs: (B(2p, c), B(2p+1, c)) at
//      dst[(s * K2 + p) * 128 + 2c + {0, 1}], zero past N and in the pad row (pack_bf16_pairs).
//
// MK_BF16_DOT_EMULATED replaces the instruction with two FMAs on the unpacked halves: the same
// sums except for denormals, which vdpbf16ps flushes. That build (the "avx512bf16-emulated"
// table) exercises every layout and loop of this path on CPUs without AVX512-BF16; only the one
// instruction is left to the hardware.
#pragma once
#include "gemm.h"
#include "mixing_params.h"

#if defined(MK_BF16_DOT)
namespace mixerkern { namespace cpu { namespace MK_ISA {

#if defined(MK_BF16_DOT_EMULATED)
// The bf16 pairs of each 32-bit lane as fp32: the odd (high) one in place, the even one shifted up.
inline __m512 odd_bf16(__m512i v) { return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xffff0000u)))); }
inline __m512 even_bf16(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
#endif

inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
#if defined(MK_BF16_DOT_EMULATED)
  return _mm512_fmadd_ps(even_bf16(a), even_bf16(b), _mm512_fmadd_ps(odd_bf16(a), odd_bf16(b), acc));
#else
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
#endif
}

constexpr int kPairStripElems = 2 * kStripCols;  // bf16 per pair row of a 64-column strip

inline __mmask32 mask32(int n) { return n >= 32 ? ~__mmask32(0) : n <= 0 ? 0 : (__mmask32(1) << n) - 1; }
inline __mmask16 mask16(int n) { return Vec512::mask(n > 0 ? n : 0); }

// fp32 -> bf16, rounding to nearest even: 32 values from two vectors, lo's 16 then hi's. The real
// build converts both in one vcvtne2ps2bf16, which also flushes denormal inputs to zero: the same
// GEMM results, since vdpbf16ps flushes denormal operands anyway.
inline __m512i bf16_concat(__m512 lo, __m512 hi) {
#if defined(MK_BF16_DOT_EMULATED)
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(bf16_bits(lo))),
                            _mm512_cvtepi32_epi16(bf16_bits(hi)), 1);
#else
  return _mm512_castps_si512((__m512)_mm512_cvtne2ps_pbh(hi, lo));
#endif
}

// One pair row: lane j holds (lo[j], hi[j]) as bf16, lo's in the low half.
inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
#if defined(MK_BF16_DOT_EMULATED)
  return _mm512_or_si512(bf16_bits(lo), _mm512_slli_epi32(bf16_bits(hi), 16));
#else
  alignas(64) static constexpr int16_t kInterleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                          8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(kInterleave), bf16_concat(lo, hi));
#endif
}

// One strip of B from fp32 rows: K rows of w <= 64 columns (row stride ld) -> depth_pairs(K) pair
// rows of dst (kPairStripElems bf16 each), zero past w and in the pad row of an odd K.
inline void pack_bf16_pairs(const float* src, int64_t ld, int K, int w, bf16* dst) {
  for (int p = 0; p < depth_pairs(K); ++p) {
    const float* r0 = src + 2 * p * ld;
    const bool has_odd = 2 * p + 1 < K;
    for (int j = 0; j < kStripCols; j += kLanes) {
      const __mmask16 m = mask16(w - j);
      const __m512 hi = has_odd ? _mm512_maskz_loadu_ps(m, r0 + ld + j) : _mm512_setzero_ps();
      _mm512_storeu_si512(dst + p * kPairStripElems + 2 * j, bf16_pairs(_mm512_maskz_loadu_ps(m, r0 + j), hi));
    }
  }
}

// All of B (K x N, fp32 rows of stride ld) as pair strips: column_strips(N) strips of pack_bf16_pairs.
inline void pack_bf16_pair_strips(const float* src, int64_t ld, int K, int N, bf16* dst) {
  for (int j0 = 0; j0 < N; j0 += kStripCols, dst += int64_t(depth_pairs(K)) * kPairStripElems)
    pack_bf16_pairs(src + j0, ld, K, imin(kStripCols, N - j0), dst);
}

// A from fp32 rows: rows x K (row stride ld) -> bf16 rows of stride 2 * depth_pairs(K), the pad zero.
inline void pack_bf16_rows(const float* src, int64_t ld, int rows, int K, bf16* dst) {
  const int ldd = 2 * depth_pairs(K);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < ldd; k += 2 * kLanes) {
      const float* s = src + r * ld + k;
      const __m512i v = bf16_concat(_mm512_maskz_loadu_ps(mask16(K - k), s), _mm512_maskz_loadu_ps(mask16(K - k - kLanes), s + kLanes));
      _mm512_mask_storeu_epi16(dst + int64_t(r) * ldd + k, mask32(ldd - k), v);
    }
}

// GELU(H) straight into a bf16 operand, without writing A = GELU(H) in fp32 first: rows x w values
// of h (row stride ld) as one pair strip (pack_bf16_pairs' layout, w <= 64), or as bf16 rows
// (pack_bf16_rows'). GELU(0) = 0 keeps the zero padding zero. The exact GELU takes the degree-3
// table (vec.h): its error is a tenth of the bf16 rounding that follows.
inline void gelu_bf16_pairs(const float* h, int64_t ld, int rows, int w, bool tanh_approx, bf16* dst) {
  for (int p = 0; p < depth_pairs(rows); ++p) {
    const float* r0 = h + 2 * p * ld;
    const bool has_odd = 2 * p + 1 < rows;
    __m512 v[2 * kTileVecs];  // row 2p's four vectors, then row 2p + 1's
    for (int q = 0; q < kTileVecs; ++q) {
      const __mmask16 m = mask16(w - q * kLanes);
      v[q] = _mm512_maskz_loadu_ps(m, r0 + q * kLanes);
      v[kTileVecs + q] = has_odd ? _mm512_maskz_loadu_ps(m, r0 + ld + q * kLanes) : _mm512_setzero_ps();
    }
    gelu512<2 * kTileVecs, kPhiDegreeBf16>(v, nullptr, tanh_approx);
    for (int q = 0; q < kTileVecs; ++q)
      _mm512_storeu_si512(dst + p * kPairStripElems + 2 * q * kLanes, bf16_pairs(v[q], v[kTileVecs + q]));
  }
}
inline void gelu_bf16_rows(const float* h, int64_t ld, int rows, int n, bool tanh_approx, bf16* dst) {
  const int ldd = 2 * depth_pairs(n);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < ldd; k += kTileVecs * kLanes) {
      __m512 v[kTileVecs];
      for (int q = 0; q < kTileVecs; ++q) v[q] = _mm512_maskz_loadu_ps(mask16(n - k - q * kLanes), h + r * ld + k + q * kLanes);
      gelu512<kTileVecs, kPhiDegreeBf16>(v, nullptr, tanh_approx);
      for (int q = 0; q < kTileVecs; q += 2)
        _mm512_mask_storeu_epi16(dst + int64_t(r) * ldd + k + q * kLanes, mask32(ldd - k - q * kLanes), bf16_concat(v[q], v[q + 1]));
    }
}

template <int MR, int NV, class Epi>
inline void dot_tile(int K2, const bf16* A, int64_t lda, int64_t pa, const bf16* B, __mmask16 tail, int i0, int j0,
                     const Epi& epi) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int p = 0; p < K2; ++p, A += pa, B += kPairStripElems) {
    __m512i b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) b[j] = _mm512_loadu_si512(B + j * 2 * kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t pair;  // (A(i, 2p), A(i, 2p + 1)) as one word; memcpy, since bf16 may not be read as int32_t
      std::memcpy(&pair, A + i * lda, sizeof pair);
      const __m512i a = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = dot_pairs(acc[i][j], a, b[j]);
    }
  }
  const Epi e = epi;  // a local copy, as in gemm_tile
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) e(i0 + i, j0 + j * kLanes, Vec512{acc[i][j]}, j == NV - 1 ? tail : Vec512::mask(kLanes));
}

template <int NV, class Epi>
inline void dot_strip(int M, int K2, const bf16* A, int64_t lda, int64_t pa, const bf16* B, __mmask16 tail, int i0,
                      int j0, const Epi& epi) {
  int i = 0;
  for (; i + kTileRows <= M; i += kTileRows) dot_tile<kTileRows, NV>(K2, A + i * lda, lda, pa, B, tail, i0 + i, j0, epi);
  for (; i + 4 <= M; i += 4) dot_tile<4, NV>(K2, A + i * lda, lda, pa, B, tail, i0 + i, j0, epi);
  for (; i + 2 <= M; i += 2) dot_tile<2, NV>(K2, A + i * lda, lda, pa, B, tail, i0 + i, j0, epi);
  for (; i < M; ++i) dot_tile<1, NV>(K2, A + i * lda, lda, pa, B, tail, i0 + i, j0, epi);
}

// C (M x N) = A B with A's pair (A(i, 2p), A(i, 2p + 1)) at A + i * lda + p * pa; rows i0 + i.
template <class Epi>
void gemm_bf16_rows(int M, int N, int K2, const bf16* A, int64_t lda, int64_t pa, int i0, const bf16* B, const Epi& epi) {
  for (int j0 = 0; j0 < N; j0 += kStripCols, B += int64_t(K2) * kPairStripElems) {
    const int w = imin(kStripCols, N - j0), nv = ceil_div(w, kLanes);
    const __mmask16 tail = Vec512::mask(w - (nv - 1) * kLanes);
    switch (nv) {
      case 4: dot_strip<4>(M, K2, A, lda, pa, B, tail, i0, j0, epi); break;
      case 3: dot_strip<3>(M, K2, A, lda, pa, B, tail, i0, j0, epi); break;
      case 2: dot_strip<2>(M, K2, A, lda, pa, B, tail, i0, j0, epi); break;
      default: dot_strip<1>(M, K2, A, lda, pa, B, tail, i0, j0, epi);
    }
  }
}

// C (M x N) = A (M x K) B (K x N) in the layouts above (K2 = depth_pairs(K)), delivered to `epi` one
// 16-column vector at a time as fp32, like gemm().
template <class Epi>
void gemm_bf16(int M, int N, int K2, const bf16* A, int64_t lda, const bf16* B, Epi&& epi) {
  gemm_bf16_rows(M, N, K2, A, lda, 2, 0, B, epi);
}

// C (M x N) = A^T B for A (K x M) given, like B, as pair strips (the backwards' weight gradients,
// dW += dY^T X over a block's rows): A^T's pair (A(2p, i), A(2p + 1, i)) of strip s = i / 64 sits
// at s * K2 * 128 + p * 128 + 2 (i % 64), so each 64-row band of C reads one strip with row
// stride 2 and pair stride 128, and a tile's MR pairs per step are contiguous.
template <class Epi>
void gemm_bf16_tn(int M, int N, int K2, const bf16* A, const bf16* B, Epi&& epi) {
  for (int i0 = 0; i0 < M; i0 += kStripCols, A += int64_t(K2) * kPairStripElems)
    gemm_bf16_rows(imin(kStripCols, M - i0), N, K2, A, 2, kPairStripElems, i0, B, epi);
}

}}}  // namespace mixerkern::cpu::MK_ISA
#endif
