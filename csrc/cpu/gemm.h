// Register-blocked GEMM with a fused epilogue: C = A B, then epi(i, j, C[i, j:j+16], mask).
//   A(i, k) = A[i * a_rs + k * a_cs]   (any strides: row-major, column-major or transposed views)
//   B(k, j) = B[k * ldb + j]           (row-major)
// Each MR x (NV*16) tile of C lives in registers for the whole K loop: per k it loads NV vectors of
// B and broadcasts MR scalars of A into MR*NV FMAs. Nothing is written to memory except through
// the epilogue, which is where bias, GELU, dropout, residuals and accumulation are fused.
#pragma once
#include "vec.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

constexpr int kTileRows = 6;   // MR: 6 x 4 accumulators + 4 B vectors + 1 broadcast fit 32 zmm
constexpr int kTileVecs = 4;   // NV: 64 columns of fp32

// `part` (row stride kTileVecs*16) carries the tile's partial sums between K blocks: read unless
// this is the first block, written unless it is the last, which hands the sums to the epilogue.
template <int MR, int NV, class V, class Epi, class S = typename V::scalar>
inline void gemm_tile(int K, const S* A, int64_t a_rs, int64_t a_cs, const S* B, int64_t ldb,
                      typename V::Mask tail, int i0, int j0, Epi& epi, S* part, bool first, bool last) {
  constexpr int ldp = kTileVecs * kLanes;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = first ? V::zero() : V::load(part + i * ldp + j * kLanes);
  for (int k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV - 1; ++j) b[j] = V::load(B + j * kLanes);
    b[NV - 1] = V::load(B + (NV - 1) * kLanes, tail);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V a = V::set1(A[i * a_rs]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = fmadd(a, b[j], acc[i][j]);
    }
    A += a_cs;
    B += ldb;
  }
  if (!last) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j].store(part + i * ldp + j * kLanes);
    return;
  }
  // A local copy whose address never escapes: the intrinsics' vector stores may alias anything,
  // so through the caller's reference every member (pointers, strides, flags) is reloaded after
  // each stored vector (~20 scalar instructions per vector in ResidualOut).
  const Epi e = epi;
  const typename V::Mask full = V::mask(kLanes);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) e(i0 + i, j0 + j * kLanes, acc[i][j], j == NV - 1 ? tail : full);
}

// All row tiles of one column strip of NV vectors. Remainder rows use 4/2/1-row tiles, so only
// those variants are instantiated (compile time grows with every (MR, NV, epilogue) combination).
//
// Long K (>= kBlockMinK) is cut into blocks of kBlockK rows of B, and each block of the strip
// (kBlockK x 64 fp32 = 16 KB) is copied into a contiguous buffer that stays in L1 while every row
// tile of a chunk of kChunkRows rows passes over it. Read in place, B rows lie ldb apart: for ldb
// a multiple of 256 floats they all fall into 16 of L1's 64 sets, so a long strip evicts itself
// and a tile over the whole K streams it from L2 once per row tile. Measured here (C++, same
// process, best of 10, M = 64, GFLOP/s, unblocked -> blocked + packed): N=256 K=1024 57 -> 108,
// N=K=768 45 -> 105, N=3072 K=768 24 -> 63, N=768 K=3072 20 -> 55 (benchmarks/RESULTS.md). A
// version that blocked and packed every GEMM ran the cifar presets' ops (K <= 256) 2-8 % slower:
// there the copy and the partial sums cost more than they save, so K < 256 keeps the single pass.
// From K = 256 blocking pays (C++ A/Bs, blocked vs single pass: channel_mixing forward 1.03-1.05x,
// channel_mixing_postnorm backward at dim = hidden = 256 1.10-1.12x), and a B whose strip is
// already contiguous (ldb = 64, e.g. channel mixing's W1^T) is blocked without the copy.
constexpr int kBlockK = 64;
constexpr int kBlockMinK = 256;
constexpr int kChunkRows = 96;  // a multiple of kTileRows; partial sums: 96 x 64 fp32 = 24 KB on the stack
constexpr int kPackMinRows = 4 * kTileRows;
constexpr int kPackAhead = 8;  // rows of B prefetched ahead of the copy
template <int N> struct TileRows { static constexpr int value = N; };

template <int NV, class V, class Epi, class S>
inline void gemm_strip(int M, int K, const S* A, int64_t a_rs, int64_t a_cs, const S* B, int64_t ldb,
                       typename V::Mask tail, int j0, Epi& epi) {
  constexpr int ldp = kTileVecs * kLanes;
  alignas(64) S part[kChunkRows * ldp];
  alignas(64) S packed[kBlockK * NV * kLanes];
  const bool blocked = K >= kBlockMinK, pack = blocked && M >= kPackMinRows && ldb != NV * kLanes;
  const int blocks = blocked ? ceil_div(K, kBlockK) : 1;
  for (int c0 = 0; c0 < M; c0 += kChunkRows) {
    const int c1 = imin(M, c0 + kChunkRows);
    for (int kb = 0; kb < blocks; ++kb) {
      const int k0 = kb * kBlockK, kc = blocked ? imin(kBlockK, K - k0) : K;
      const bool first = kb == 0, last = kb + 1 == blocks;
      const S* Ak = A + k0 * a_cs;
      const S* Bk = B + k0 * ldb;
      int64_t ldk = ldb;
      if (pack) {  // lanes past the tail are zero in the copy, as the masked loads would read them
        for (int k = 0; k < kc; ++k) {
          if (k0 + k + kPackAhead < K)  // the copy is latency-bound on B's lines without this
            for (int j = 0; j < NV; ++j) __builtin_prefetch(Bk + (k + kPackAhead) * ldb + j * kLanes, 0, 3);
          for (int j = 0; j < NV; ++j)
            V::load(Bk + k * ldb + j * kLanes, j == NV - 1 ? tail : V::mask(kLanes)).store(packed + (k * NV + j) * kLanes);
        }
        Bk = packed;
        ldk = NV * kLanes;
      }
      auto tile = [&](auto rows, int i0) {
        gemm_tile<decltype(rows)::value, NV, V>(kc, Ak + i0 * a_rs, a_rs, a_cs, Bk, ldk, tail, i0, j0, epi,
                                                part + (i0 - c0) * ldp, first, last);
      };
      int i0 = c0;
      if constexpr (NV == 3)  // 8 x 3 accumulators: the same 24 FMAs per k as 6 x 4, 11 loads instead of 10
        for (; i0 + 8 <= c1; i0 += 8) tile(TileRows<8>{}, i0);
      for (; i0 + kTileRows <= c1; i0 += kTileRows) tile(TileRows<kTileRows>{}, i0);
      for (; i0 + 4 <= c1; i0 += 4) tile(TileRows<4>{}, i0);
      for (; i0 + 2 <= c1; i0 += 2) tile(TileRows<2>{}, i0);
      for (; i0 < c1; ++i0) tile(TileRows<1>{}, i0);
    }
  }
}

// B's columns come in strips of kStripWidth: strip s starts at B + s * b_strip, so b_strip =
// kStripWidth is plain row-major B, and b_strip = K * kStripWidth with ldb = kStripWidth is B
// packed strip by strip (pack_strips), each strip one contiguous K x 64 block.
constexpr int kStripWidth = kTileVecs * kLanes;

// C (M x N) = A (M x K) B (K x N), delivered to `epi` one 16-column vector at a time.
#if defined(MK_AVX512)
template <class V, class Epi, class S = typename V::scalar>
void gemm(int M, int N, int K, const S* A, int64_t a_rs, int64_t a_cs, const S* B, int64_t ldb, Epi&& epi,
          int64_t b_strip = kStripWidth) {
  static_assert(kTileVecs == 4, "strips below are 4, 3, 2 and 1 vectors wide");
  const typename V::Mask full = V::mask(kLanes);
  const int nvec = ceil_div(N, kLanes);
  const typename V::Mask last = V::mask(N - (nvec - 1) * kLanes);
  for (int jv = 0; jv < nvec;) {  // one K x 64 strip of B stays hot across all row tiles
    // Widths 4, then 3 where the rest is 3 or 6 vectors (N = 48, 96: 3 + 3, not 4 + 2 or 2 + 1):
    // 6 x 2 tiles do 12 FMAs per 8 loads and ran 0.88x of 8 x 3 (C++, M = 64, K = 96, N = 96:
    // 33.9 vs 38.4 FLOP/cycle; N = 48: 30.2-31.1 vs 39.2-41.7). A packed B's 3-wide piece must
    // not cross into the next 64-column strip.
    const int left = nvec - jv;
    const bool fits3 = b_strip == kStripWidth || (left == 3 && jv % kTileVecs == 0);
    const int width = fits3 && (left == 3 || left == 6) ? 3 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
    const typename V::Mask tail = jv + width == nvec ? last : full;
    const int j0 = jv * kLanes;
    const S* Bj = B + j0 / kStripWidth * b_strip + j0 % kStripWidth;
    if (width == 4) gemm_strip<4, V>(M, K, A, a_rs, a_cs, Bj, ldb, tail, j0, epi);
    else if (width == 3) gemm_strip<3, V>(M, K, A, a_rs, a_cs, Bj, ldb, tail, j0, epi);
    else if (width == 2) gemm_strip<2, V>(M, K, A, a_rs, a_cs, Bj, ldb, tail, j0, epi);
    else gemm_strip<1, V>(M, K, A, a_rs, a_cs, Bj, ldb, tail, j0, epi);
    jv += width;
  }
}
#else
// Portable build: one output row at a time in a small buffer, loops the compiler vectorizes for
// the baseline ISA. Far simpler to compile than register tiles of 16-lane array "vectors".
template <class V, class Epi, class S = typename V::scalar>
void gemm(int M, int N, int K, const S* A, int64_t a_rs, int64_t a_cs, const S* B, int64_t ldb, Epi&& epi,
          int64_t b_strip = kStripWidth) {
  constexpr int kCols = kStripWidth;
  S row[kCols];
  for (int j0 = 0; j0 < N; j0 += kCols) {
    const int nc = imin(kCols, N - j0);
    for (int i = 0; i < M; ++i) {
      for (int j = 0; j < nc; ++j) row[j] = S(0);
      for (int k = 0; k < K; ++k) {
        const S a = A[i * a_rs + k * a_cs];
        const S* b = B + j0 / kStripWidth * b_strip + int64_t(k) * ldb;
        for (int j = 0; j < nc; ++j) row[j] += a * b[j];
      }
      for (int j = 0; j < nc; j += kLanes) {
        const typename V::Mask m = V::mask(nc - j);
        epi(i, j0 + j, V::load(row + j, m), m);
      }
    }
  }
}
#endif

// Common epilogues. Each sees one vector C[i, j:j+16] (mask m marks the live lanes).
template <class V, class D = typename V::scalar> struct StoreTo {  // C -> dst (row stride ld), as type D
  D* dst; int64_t ld;
  void operator()(int i, int j, V v, typename V::Mask m) const { store_as(dst + i * ld + j, v, m); }
};
template <class V, class S = typename V::scalar> struct AccumulateTo {  // dst += C
  S* dst; int64_t ld;
  void operator()(int i, int j, V v, typename V::Mask m) const {
    S* p = dst + i * ld + j;
    (V::load(p, m) + v).store(p, m);
  }
};

// B (K x N, row stride ldb) packed strip by strip for gemm(..., ldb = kStripWidth, b_strip =
// K * kStripWidth): dst holds ceil(N / kStripWidth) * K * kStripWidth elements.
template <class S> void pack_strips(const S* B, int K, int N, int64_t ldb, S* dst) {
  for (int c0 = 0; c0 < N; c0 += kStripWidth, dst += int64_t(K) * kStripWidth)
    for (int k = 0; k < K; ++k) std::memcpy(dst + k * kStripWidth, B + k * ldb + c0, sizeof(S) * size_t(imin(kStripWidth, N - c0)));
}

// dst (cols x rows) = src (rows x cols)^T, in cache-sized blocks.
template <class S>
void transpose(const S* src, int rows, int cols, S* dst) {
  constexpr int kBlock = 16;
  for (int i0 = 0; i0 < rows; i0 += kBlock)
    for (int j0 = 0; j0 < cols; j0 += kBlock)
      for (int i = i0; i < imin(i0 + kBlock, rows); ++i)
        for (int j = j0; j < imin(j0 + kBlock, cols); ++j) dst[int64_t(j) * rows + i] = src[int64_t(i) * cols + j];
}

}}}  // namespace mixerkern::cpu::MK_ISA
