// Micro-kernel unit tests, compiled once per ISA (see test_kernels_<isa>.cpp). Torch-free: each
// kernel is checked against a plain double-precision loop on random data.
#pragma once
#include "../cpu/dropout.h"
#include "../cpu/gemm.h"
#include "../cpu/gemm_bf16.h"
#include "../cpu/layernorm.h"
#include "../cpu/mixer_blocks_kernels.h"
#include "../cpu/patch_embed_kernels.h"

#include <cstdio>
#include <random>
#include <vector>

namespace mixerkern { namespace cpu { namespace MK_ISA { namespace tests {

inline int failures = 0;
#define MK_EXPECT(cond, ...)                                                     \
  do {                                                                           \
    if (!(cond)) {                                                               \
      ++failures;                                                                \
      std::printf("[%s] FAIL %s:%d: ", MK_ISA_NAME, __FILE__, __LINE__);         \
      std::printf(__VA_ARGS__);                                                  \
      std::printf("\n");                                                         \
    }                                                                            \
  } while (0)

inline std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// gemm() with every A layout, and B row-major or packed in strips, against a naive product, over
// odd sizes that exercise all tile tails and strip widths (4, 3, 2, 1 vectors).
inline void test_gemm() {
  using V = Vec<float>;
  // K >= 256 runs in K blocks (a short last one at 600 and 530), copying B's strip once M >= 24
  // unless it is contiguous already (N = 64, and every packed B); M > 96 spans several row chunks.
  const int sizes[][3] = {{1, 1, 1}, {6, 64, 8}, {7, 17, 5}, {13, 100, 37}, {64, 256, 64}, {5, 130, 3},
                          {30, 70, 600}, {100, 33, 530}, {7, 20, 512}, {97, 64, 65}, {64, 64, 256}, {40, 100, 300},
                          {21, 96, 70}, {64, 48, 300}, {9, 112, 16}};  // 3-vector strips: 3 + 3, K blocks, 4 + 3
  for (const auto& s : sizes)
  for (int packed = 0; packed < 2; ++packed) {
    const int M = s[0], N = s[1], K = s[2];
    const auto a = randn(size_t(M) * K, 1), b = randn(size_t(K) * N, 2);
    std::vector<float> strips(size_t(ceil_div(N, kStripWidth)) * K * kStripWidth);
    pack_strips(b.data(), K, N, N, strips.data());
    for (int col_major = 0; col_major < 2; ++col_major) {
      const int64_t a_rs = col_major ? 1 : K, a_cs = col_major ? M : 1;
      std::vector<float> c(size_t(M) * N, -1.f);
      if (packed) gemm<V>(M, N, K, a.data(), a_rs, a_cs, strips.data(), kStripWidth, StoreTo<V>{c.data(), N},
                          int64_t(K) * kStripWidth);
      else gemm<V>(M, N, K, a.data(), a_rs, a_cs, b.data(), N, StoreTo<V>{c.data(), N});
      double worst = 0;
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          // Relative to sum |a b|: fp32 rounding grows with K, so |ref| alone is no scale.
          double ref = 0, scale = 1;
          for (int k = 0; k < K; ++k) {
            const double prod = double(a[i * a_rs + k * a_cs]) * b[size_t(k) * N + j];
            ref += prod;
            scale += std::fabs(prod);
          }
          worst = std::fmax(worst, std::fabs(ref - c[size_t(i) * N + j]) / scale);
        }
      MK_EXPECT(worst < 1e-5, "gemm M=%d N=%d K=%d col_major=%d packed=%d: max rel err %g", M, N, K, col_major,
                packed, worst);
    }
  }
}

#if defined(MK_BF16_DOT)
// gemm_bf16 with A packed as bf16 rows and B as pair strips from fp32, over odd sizes (odd K pads a
// pair, N tails of 1-4 vectors, several strips, all row tiles), against a double-precision product
// of the bf16-rounded operands: the products are exact in fp32, so only accumulation rounding is left.
inline void test_gemm_bf16() {
  using V = Vec<float>;
  const int sizes[][3] = {{1, 1, 1}, {6, 64, 8}, {7, 17, 5}, {13, 100, 37}, {64, 256, 64}, {5, 130, 3},
                          {30, 70, 197}, {97, 48, 65}, {11, 96, 96}};
  for (const auto& s : sizes) {
    const int M = s[0], N = s[1], K = s[2], K2 = depth_pairs(K);
    auto a = randn(size_t(M) * K, 3), b = randn(size_t(K) * N, 4);
    const float nan = std::nanf("");
    a[0] = M * K > 1 ? a[0] : nan;  // the 1x1x1 case: NaN must come through
    std::vector<bf16> ap(size_t(M) * 2 * K2), bp(size_t(ceil_div(N, kStripCols)) * K2 * kPairStripElems);
    pack_bf16_rows(a.data(), K, M, K, ap.data());
    for (int j0 = 0; j0 < N; j0 += kStripCols)
      pack_bf16_pairs(b.data() + j0, N, K, imin(kStripCols, N - j0), bp.data() + size_t(j0 / kStripCols) * K2 * kPairStripElems);
    auto round = [](float f) { return bf16_to_float(float_to_bf16(f)); };
    std::vector<float> c(size_t(M) * N, -1.f);
    gemm_bf16(M, N, K2, ap.data(), 2 * K2, bp.data(), StoreTo<V>{c.data(), N});
    double worst = 0;
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double ref = 0, scale = 1;
        for (int k = 0; k < K; ++k) {
          const double prod = double(round(a[size_t(i) * K + k])) * round(b[size_t(k) * N + j]);
          ref += prod;
          scale += std::fabs(prod);
        }
        const float got = c[size_t(i) * N + j];
        if (std::isnan(ref)) MK_EXPECT(std::isnan(got), "gemm_bf16 M=%d N=%d K=%d: NaN lost at (%d, %d)", M, N, K, i, j);
        else worst = std::fmax(worst, std::fabs(ref - got) / scale);
      }
    MK_EXPECT(worst < 1e-6, "gemm_bf16 M=%d N=%d K=%d: max rel err %g", M, N, K, worst);
    // The pad column of A and the pad row / columns of B are zero.
    for (int i = 0; i < M && K % 2; ++i) MK_EXPECT(ap[size_t(i) * 2 * K2 + K].bits == 0, "gemm_bf16: A pad not zero");
    if (N % kStripCols)
      MK_EXPECT(bp[size_t(N / kStripCols) * K2 * kPairStripElems + 2 * (N % kStripCols)].bits == 0,
                "gemm_bf16: B column pad not zero");
    for (int c = 0; c < N && K % 2; ++c)  // the odd half of B's last pair row
      MK_EXPECT(bp[(size_t(c / kStripCols) * K2 + K2 - 1) * kPairStripElems + 2 * (c % kStripCols) + 1].bits == 0,
                "gemm_bf16: B pad row not zero");
  }
}
#endif

// gelu_inplace over -20..20 (a length that leaves a tail after the four-vector packs) and NaN.
// Past |x| = 13.1 exp(-x^2/2) is below float's normal range: no output may be denormal (vec.h).
inline void test_gelu() {
  double worst[2] = {0, 0}, worst_grad[2] = {0, 0};
  for (int tanh_approx = 0; tanh_approx < 2; ++tanh_approx) {
    std::vector<float> in, out, grad;
    for (float x = -20.f; x < 20.f; x += 0.0137f) in.push_back(x);
    out = in;
    grad.resize(in.size());
    gelu_inplace(out.data(), grad.data(), int64_t(in.size()), tanh_approx);
    for (size_t i = 0; i < in.size(); ++i) {
      double ref_grad;
      const double ref = gelu_scalar<double>(in[i], tanh_approx, &ref_grad);
      worst[tanh_approx] = std::fmax(worst[tanh_approx], std::fabs(out[i] - ref) / (1 + std::fabs(ref)));
      worst_grad[tanh_approx] = std::fmax(worst_grad[tanh_approx], std::fabs(grad[i] - ref_grad));
    }
    int denormal = 0;
    for (size_t i = 0; i < in.size(); ++i) denormal += std::fpclassify(out[i]) == FP_SUBNORMAL || std::fpclassify(grad[i]) == FP_SUBNORMAL;
    MK_EXPECT(denormal == 0, "gelu(tanh=%d): %d denormal outputs or gradients", tanh_approx, denormal);
    std::vector<float> no_grad = in;  // the grad-free variant computes the same values
    gelu_inplace(no_grad.data(), (float*)nullptr, int64_t(in.size()), tanh_approx);
    MK_EXPECT(no_grad == out, "gelu(tanh=%d) differs with and without grad", tanh_approx);
  }
  for (int t = 0; t < 2; ++t) {
    MK_EXPECT(worst[t] < 1e-6, "gelu(tanh=%d): max rel err %g", t, worst[t]);
    // tanh form: sech^2 = 1 - t^2 cancels where |t| -> 1, so its gradient gets a looser bound.
    MK_EXPECT(worst_grad[t] < (t ? 5e-6 : 1e-6), "gelu'(tanh=%d): max abs err %g", t, worst_grad[t]);
  }
  for (int t = 0; t < 2; ++t) {
    std::vector<float> nans(100, std::nanf("")), nan_grad(100);
    gelu_inplace(nans.data(), nan_grad.data(), int64_t(nans.size()), t);
    MK_EXPECT(std::isnan(nans[0]) && std::isnan(nans[99]) && std::isnan(nan_grad[0]) && std::isnan(nan_grad[99]),
              "gelu(tanh=%d) of NaN and its gradient must be NaN", t);
  }
}

inline void test_layernorm_row() {
  using V = Vec<float>;
  for (int n : {1, 15, 16, 17, 100, 256, 330}) {
    const auto x = randn(n, 3), w = randn(n, 4), b = randn(n, 5);
    std::vector<float> y(n);
    float mean, rstd;
    row_stats<V>(x.data(), n, 1e-6f, &mean, &rstd);
    row_normalize<V>(x.data(), n, mean, rstd, w.data(), b.data(), y.data());
    double mu = 0, var = 0;
    for (float v : x) mu += v;
    mu /= n;
    for (float v : x) var += (v - mu) * (v - mu);
    const double r = 1 / std::sqrt(var / n + 1e-6);
    double worst = 0;
    for (int j = 0; j < n; ++j) worst = std::fmax(worst, std::fabs((x[j] - mu) * r * w[j] + b[j] - y[j]));
    MK_EXPECT(worst < 1e-5, "layernorm n=%d: max abs err %g", n, worst);
  }
}

inline void test_dropout_and_bf16() {
  using V = Vec<float>;
  Dropout d;
  d.enabled = true; d.seed = 0x123456789abcdefull; d.threshold = 0x80000000u; d.scale = 2.f;
  int kept = 0;
  for (uint64_t idx = 0xfffffff0ull; idx < 0xfffffff0ull + 4096; idx += kLanes) {  // crosses 2^32
    float f[kLanes];
    d.factor<V>(idx).store(f);
    for (int i = 0; i < kLanes; ++i) {
      const bool keep = d.hash(idx + i) < d.threshold;
      MK_EXPECT(f[i] == (keep ? 2.f : 0.f), "dropout lane %d at %llu disagrees with the scalar hash", i,
                (unsigned long long)idx);
      kept += keep;
    }
  }
  MK_EXPECT(kept > 1850 && kept < 2250, "dropout keep count %d of 4096 at p=0.5", kept);
  const float vals[kLanes] = {1.f, -2.5f, 3.14159f, 1e-30f, 65504.f, -0.f, 1.00390625f, 1.01171875f,
                              std::nanf(""), INFINITY, -INFINITY, 7.f, 8.f, 9.f, 10.f, 11.f};
  bf16 out[kLanes];
  store_as(out, V::load(vals), V::mask(kLanes));
  for (int i = 0; i < kLanes; ++i) {
    const bf16 ref = float_to_bf16(vals[i]);
    MK_EXPECT(out[i].bits == ref.bits, "bf16 rounding of %g: %04x vs %04x", vals[i], out[i].bits, ref.bits);
  }
  MK_EXPECT(float_to_bf16(1.00390625f).bits == 0x3f80, "round-to-nearest-even (down)");
  MK_EXPECT(float_to_bf16(1.01171875f).bits == 0x3f82, "round-to-nearest-even (up)");
}

// gather_patches against Conv2d's (channel, row, column) flattening, and scatter_patches as its
// exact inverse, for patches narrower than, equal to and wider than one vector.
inline void test_patch_gather_scatter() {
  using V = Vec<float>;
  const int cases[][4] = {{2, 6, 9, 3}, {3, 16, 32, 16}, {1, 34, 68, 17}, {2, 4, 4, 1}};  // C, H, W, p
  for (const auto& c : cases) {
    PatchArgs<float> a;
    a.channels = c[0]; a.height = c[1]; a.width = c[2]; a.patch = c[3];
    const int p = a.patch, K = a.depth(), gw = a.grid_w();
    const auto image = randn(size_t(a.image_elems()), 11);
    std::vector<float> xp(size_t(a.patches()) * K), back(image.size(), 0.f);
    gather_patches<V>(a, image.data(), xp.data());
    int bad = 0;
    for (int q = 0; q < a.patches(); ++q)
      for (int ch = 0; ch < a.channels; ++ch)
        for (int i = 0; i < p; ++i)
          for (int j = 0; j < p; ++j) {
            const float want = image[(size_t(ch) * a.height + q / gw * p + i) * a.width + q % gw * p + j];
            bad += xp[size_t(q) * K + (ch * p + i) * p + j] != want;
          }
    MK_EXPECT(bad == 0, "gather_patches C=%d H=%d W=%d p=%d: %d wrong values", c[0], c[1], c[2], p, bad);
    scatter_patches<V>(a, xp.data(), back.data());
    MK_EXPECT(back == image, "scatter_patches C=%d H=%d W=%d p=%d does not invert the gather", c[0], c[1], c[2], p);
  }
}

// pool_rows: the mean over rows, of LN(y) or of y, against a double-precision loop.
inline void test_pool_rows() {
  using V = Vec<float>;
  for (int n : {3, 100, 256})
    for (int rows : {1, 37, 64})
      for (bool ln : {false, true}) {
        const auto y = randn(size_t(rows) * n, 5 + n + rows), w = randn(n, 1), b = randn(n, 2);
        std::vector<float> sum(n), out(n);
        pool_rows<V>(y.data(), rows, n, ln ? w.data() : nullptr, ln ? b.data() : nullptr, 1e-5f, sum.data(), out.data());
        std::vector<double> want(n, 0.0);
        for (int r = 0; r < rows; ++r) {
          const float* yr = y.data() + size_t(r) * n;
          double mu = 0, var = 0;
          for (int j = 0; j < n; ++j) mu += yr[j] / double(n);
          for (int j = 0; j < n; ++j) var += (yr[j] - mu) * (yr[j] - mu) / n;
          for (int j = 0; j < n; ++j)
            want[j] += (ln ? (yr[j] - mu) / std::sqrt(var + 1e-5) * w[j] + b[j] : yr[j]) / rows;
        }
        double err = 0;
        for (int j = 0; j < n; ++j) err = std::max(err, std::abs(out[j] - want[j]));
        MK_EXPECT(err <= 2e-5, "pool_rows n=%d rows=%d ln=%d: max error %g", n, rows, int(ln), err);
      }
}

// rows_stats (16 rows per pass, one vector 1/sqrt) against row_stats row by row: the same sums in
// the same order, so equal up to the rounding of a vector vs a scalar division and square root.
inline void test_rows_stats() {
  using V = Vec<float>;
  for (int n : {1, 17, 100, 256}) {
    const int rows = 37;
    const auto x = randn(size_t(rows) * n, 7 + n);
    std::vector<float> mean(rows), rstd(rows);
    rows_stats<V>(x.data(), rows, n, 1e-5f, mean.data(), rstd.data());
    for (int r = 0; r < rows; ++r) {
      float m, s;
      row_stats<V>(x.data() + size_t(r) * n, n, 1e-5f, &m, &s);
      MK_EXPECT(mean[r] == m && std::abs(rstd[r] - s) <= 1e-6f * s, "rows_stats n=%d row %d: (%g, %g) vs (%g, %g)", n, r,
                mean[r], rstd[r], m, s);
    }
  }
}

inline int run_all() {
  test_gemm();
#if defined(MK_BF16_DOT)
  test_gemm_bf16();
#endif
  test_patch_gather_scatter();
  test_pool_rows();
  test_rows_stats();
  test_gelu();
  test_layernorm_row();
  test_dropout_and_bf16();
  std::printf("[%s] %s\n", MK_ISA_NAME, failures ? "FAILED" : "all micro-kernel tests passed");
  return failures;
}

}}}}  // namespace mixerkern::cpu::MK_ISA::tests
