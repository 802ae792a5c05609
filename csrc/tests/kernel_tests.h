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
#include <cstring>
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
                          {30, 70, 197}, {97, 48, 65}, {11, 96, 96}, {130, 20, 63}};
  for (const auto& s : sizes) {
    const int M = s[0], N = s[1], K = s[2], K2 = depth_pairs(K);
    auto a = randn(size_t(M) * K, 3), b = randn(size_t(K) * N, 4);
    const float nan = std::nanf("");
    a[0] = M * K > 1 ? a[0] : nan;  // the 1x1x1 case: NaN must come through
    std::vector<bf16> ap(size_t(M) * 2 * K2), bp(size_t(ceil_div(N, kStripCols)) * K2 * kPairStripElems);
    pack_bf16_rows(a.data(), K, M, K, ap.data());
    pack_bf16_pair_strips(b.data(), N, K, N, bp.data());
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
    // gemm_bf16_tn, with A^T (K x M) as pair strips: the same pairs in the same order, so the same bits.
    std::vector<float> at(size_t(K) * M);
    for (int i = 0; i < M; ++i)
      for (int k = 0; k < K; ++k) at[size_t(k) * M + i] = a[size_t(i) * K + k];
    std::vector<bf16> atp(size_t(ceil_div(M, kStripCols)) * K2 * kPairStripElems);
    pack_bf16_pair_strips(at.data(), M, K, M, atp.data());
    std::vector<float> ct(c.size(), -1.f);
    gemm_bf16_tn(M, N, K2, atp.data(), bp.data(), StoreTo<V>{ct.data(), N});
    int differ = 0;
    for (size_t i = 0; i < c.size(); ++i) differ += std::memcmp(&c[i], &ct[i], sizeof(float)) != 0;
    MK_EXPECT(differ == 0, "gemm_bf16_tn M=%d N=%d K=%d: %d results differ from gemm_bf16's", M, N, K, differ);
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

// The bf16-dot forwards make their operands in one pass: LayerNorm straight to bf16 pair strips
// (token mixing) or rows (channel mixing), GELU straight to pairs or rows. The LayerNorm ones must
// equal, bit for bit, the fp32 result packed afterwards (the same operations in the same order),
// zero padding included. GELU takes its degree-3 table: within bf16's half-ulp of the exact value
// plus that table's bound (2.1e-4 relative, 1.9e-7 absolute in Phi), the padding zero.
inline void test_bf16_operands() {
  using V = Vec<float>;
  auto same = [](const std::vector<bf16>& a, const std::vector<bf16>& b) {
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].bits != b[i].bits) return false;
    return true;
  };
  auto gelu_ok = [](float x, bf16 got) {  // got may also be the padding's zero, for x = 0
    const double exact = 0.5 * x * std::erfc(-x / std::sqrt(2.0)), g = bf16_to_float(got);
    return std::fabs(g - exact) <= std::fabs(exact) * (1.0 / 256 + 2.5e-4) + 2e-7 * std::fabs(x);
  };
  for (int rows : {1, 7, 64})
    for (int n : {5, 37, 64, 100, 256}) {
      auto h = randn(size_t(rows) * n, 21 + n);
      for (auto& v : h) v *= 3;  // GELU's tails too
      const int K2 = depth_pairs(rows), ldd = 2 * depth_pairs(n);
      if (n <= kStripCols) {  // one pair strip
        std::vector<bf16> got(size_t(K2) * kPairStripElems, bf16{0xffff});
        gelu_bf16_pairs(h.data(), n, rows, n, false, got.data());
        int bad = 0;
        for (int p = 0; p < K2; ++p)
          for (int c = 0; c < kStripCols; ++c)
            for (int o = 0; o < 2; ++o) {
              const int r = 2 * p + o;
              bad += !gelu_ok(r < rows && c < n ? h[size_t(r) * n + c] : 0.f, got[size_t(p) * kPairStripElems + 2 * c + o]);
            }
        MK_EXPECT(bad == 0, "gelu_bf16_pairs rows=%d w=%d: %d values off", rows, n, bad);
      }
      std::vector<bf16> want(size_t(rows) * ldd), got(want.size(), bf16{0xffff});
      gelu_bf16_rows(h.data(), n, rows, n, false, got.data());
      int bad = 0;
      for (int r = 0; r < rows; ++r)
        for (int k = 0; k < ldd; ++k) bad += !gelu_ok(k < n ? h[size_t(r) * n + k] : 0.f, got[size_t(r) * ldd + k]);
      MK_EXPECT(bad == 0, "gelu_bf16_rows rows=%d n=%d: %d values off", rows, n, bad);

      for (int ln = 0; ln < 2; ++ln) {  // Block (LayerNorm first) and BareMlp forms
        MixingArgs<bf16> a;
        const auto w = randn(n, 22), b = randn(n, 23);
        a.form = ln ? MixingForm::Block : MixingForm::BareMlp;
        a.ln_w = w.data(); a.ln_b = b.data(); a.eps = 1e-5f;
        std::vector<bf16> x(h.size());
        for (size_t i = 0; i < h.size(); ++i) x[i] = float_to_bf16(h[i] * 3 + 1);
        std::vector<float> u(strip_packed_elems(rows, n)), urows(size_t(rows) * n);
        mlp_input_strips<V>(a, x.data(), rows, n, u.data());
        std::vector<bf16> want_p(size_t(column_strips(n)) * K2 * kPairStripElems), got_p(want_p.size(), bf16{0xffff});
        for (int s = 0; s < column_strips(n); ++s)
          pack_bf16_pairs(u.data() + size_t(s) * rows * kStripCols, kStripCols, rows, imin(kStripCols, n - s * kStripCols),
                          want_p.data() + size_t(s) * K2 * kPairStripElems);
        mlp_input_pair_strips(a, x.data(), rows, n, got_p.data());
        MK_EXPECT(same(want_p, got_p), "mlp_input_pair_strips rows=%d n=%d ln=%d", rows, n, ln);
        pack_bf16_rows(mlp_input<V>(a, x.data(), rows, n, urows.data()), n, rows, n, want.data());
        std::fill(got.begin(), got.end(), bf16{0xffff});
        mlp_input_bf16_rows(a, x.data(), rows, n, got.data());
        MK_EXPECT(same(want, got), "mlp_input_bf16_rows rows=%d n=%d ln=%d", rows, n, ln);
      }
    }
}

// The bf16-dot patch embedding (PatchArgs::wt_dot): bf16 pixels copied as the GEMM's rows, the depth
// padded to even when C p^2 is odd, against a double-precision convolution of the same bf16 values.
inline void test_patch_embed_bf16_dot() {
  const int cases[][5] = {{3, 16, 16, 8, 100}, {1, 9, 6, 3, 64}, {2, 10, 15, 5, 17}};  // C, H, W, p, D
  for (const auto& c : cases) {
    PatchArgs<bf16> a;
    a.channels = c[0]; a.height = c[1]; a.width = c[2]; a.patch = c[3]; a.dim = c[4]; a.batch = 2;
    const int P = a.patches(), K = a.depth(), D = a.dim, K2 = depth_pairs(K);
    const auto imf = randn(size_t(a.batch) * a.image_elems(), 12), wf = randn(size_t(D) * K, 13), bias = randn(D, 14);
    std::vector<bf16> image(imf.size()), w(wf.size()), out(size_t(a.batch) * P * D);
    for (size_t i = 0; i < imf.size(); ++i) image[i] = float_to_bf16(imf[i]);
    for (size_t i = 0; i < wf.size(); ++i) w[i] = float_to_bf16(wf[i]);
    std::vector<float> wt(size_t(K) * D);  // W^T, exactly the bf16 values
    for (int d = 0; d < D; ++d)
      for (int k = 0; k < K; ++k) wt[size_t(k) * D + d] = bf16_to_float(w[size_t(d) * K + k]);
    std::vector<bf16> strips(size_t(ceil_div(D, kStripCols)) * K2 * kPairStripElems);
    for (int j0 = 0; j0 < D; j0 += kStripCols)
      pack_bf16_pairs(wt.data() + j0, D, K, imin(kStripCols, D - j0), strips.data() + size_t(j0 / kStripCols) * K2 * kPairStripElems);
    std::vector<float> scratch(patch_scratch(P, K, D, false), std::nanf(""));  // the pad column must be written
    a.x = image.data(); a.out = out.data(); a.wt_dot = strips.data(); a.bias = bias.data();
    patch_embed_forward(a, 0, a.batch, scratch.data());
    const int gw = a.grid_w(), p = a.patch;
    double worst = 0;
    for (int b = 0; b < a.batch; ++b)
      for (int q = 0; q < P; ++q)
        for (int d = 0; d < D; ++d) {
          double ref = bias[d], scale = std::fabs(ref) + 1;
          for (int ch = 0; ch < a.channels; ++ch)
            for (int i = 0; i < p; ++i)
              for (int j = 0; j < p; ++j) {
                const double px = bf16_to_float(image[size_t(b) * a.image_elems() +
                                                      (size_t(ch) * a.height + q / gw * p + i) * a.width + q % gw * p + j]);
                const double prod = px * wt[size_t((ch * p + i) * p + j) * D + d];
                ref += prod;
                scale += std::fabs(prod);
              }
          const double err = std::fabs(ref - bf16_to_float(out[(size_t(b) * P + q) * D + d])) / scale;
          worst = std::isnan(err) ? INFINITY : std::fmax(worst, err);
        }
    MK_EXPECT(worst < 4e-3, "patch_embed bf16 dot C=%d H=%d W=%d p=%d D=%d: max rel err %g", c[0], c[1], c[2], p, D, worst);
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
  // Rounding, NaN (quiet, negative, signaling), overflow to inf; the second vector holds denormals,
  // which the bf16-dot build's one-instruction conversion would flush (it must not).
  uint32_t snan_bits = 0x7f800001u, neg_nan_bits = 0xffc12345u;
  float snan, neg_nan;
  std::memcpy(&snan, &snan_bits, 4);
  std::memcpy(&neg_nan, &neg_nan_bits, 4);
  const float vals[2][kLanes] = {{1.f, -2.5f, 3.14159f, 1e-30f, 65504.f, -0.f, 1.00390625f, 1.01171875f,
                                  std::nanf(""), INFINITY, -INFINITY, 3.4028235e38f, snan, neg_nan, 1.1754944e-38f, 11.f},
                                 {1.f, 1e-40f, -3e-39f, 1.1754942e-38f, 5.f, 6.f, 7.f, 8.f, 9.f, 10.f, 11.f, 12.f,
                                  13.f, 14.f, 15.f, 16.f}};
  for (const auto& v : vals) {
    bf16 out[kLanes];
    store_as(out, V::load(v), V::mask(kLanes));
    for (int i = 0; i < kLanes; ++i) {
      const bf16 ref = float_to_bf16(v[i]);
      MK_EXPECT(out[i].bits == ref.bits, "bf16 rounding of %g: %04x vs %04x", v[i], out[i].bits, ref.bits);
    }
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
  test_bf16_operands();
  test_patch_embed_bf16_dot();
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
