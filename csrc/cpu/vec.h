// 16-lane SIMD vectors: __m512 under MK_AVX512, a plain array (auto-vectorized) otherwise.
// Tails are handled with masks: Mask m = V::mask(n) selects the first n lanes; masked loads
// read nothing outside them and fill the rest with zeros.
#pragma once
// Standard headers come before the ISA switch so that nothing of theirs is compiled for AVX-512.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <immintrin.h>
#include "types.h"
#include "isa_begin.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

constexpr int kLanes = 16;

inline int imin(int a, int b) { return a < b ? a : b; }
inline int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

inline float bf16_to_float(bf16 v) {
  uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even; NaNs stay (quiet) NaNs.
inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  return bf16{uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

// ---------------------------------------------------------------------------------------------
// Portable vector: any scalar type S, loops the compiler vectorizes for the baseline ISA.
template <class S> struct VecG {
  using scalar = S;
  using Mask = int;  // number of leading lanes that are live
  S v[kLanes];

  static Mask mask(int n) { return n < kLanes ? n : kLanes; }
  static VecG zero() { return set1(S(0)); }
  static VecG set1(S s) { VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = s; return r; }
  static VecG load(const S* p) { VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = p[i]; return r; }
  static VecG load(const S* p, Mask m) {
    VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = i < m ? p[i] : S(0); return r;
  }
  void store(S* p) const { for (int i = 0; i < kLanes; ++i) p[i] = v[i]; }
  void store(S* p, Mask m) const { for (int i = 0; i < m; ++i) p[i] = v[i]; }
  VecG keep(Mask m) const { VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = i < m ? v[i] : S(0); return r; }
  template <class F> VecG map(F f) const { VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = f(v[i]); return r; }
  template <class F> friend VecG zip(const VecG& a, const VecG& b, F f) {
    VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = f(a.v[i], b.v[i]); return r;
  }
  friend VecG operator+(const VecG& a, const VecG& b) { return zip(a, b, [](S x, S y) { return x + y; }); }
  friend VecG operator-(const VecG& a, const VecG& b) { return zip(a, b, [](S x, S y) { return x - y; }); }
  friend VecG operator*(const VecG& a, const VecG& b) { return zip(a, b, [](S x, S y) { return x * y; }); }
  friend VecG operator/(const VecG& a, const VecG& b) { return zip(a, b, [](S x, S y) { return x / y; }); }
  friend VecG sqrt(const VecG& a) { return a.map([](S x) { return std::sqrt(x); }); }
  friend VecG fmadd(const VecG& a, const VecG& b, const VecG& c) {
    VecG r; for (int i = 0; i < kLanes; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i]; return r;
  }
  S reduce_add() const { S s = 0; for (int i = 0; i < kLanes; ++i) s += v[i]; return s; }
};

// exp(a) for a below kExpFloor is flushed to 0 rather than computed as a denormal: Intel cores
// take a microcode assist (~100+ cycles) for every denormal result and every product with one.
// GELU' = Phi(x) + x phi(x) reaches them at |x| > 13.1: a channel_mlp backward whose fc1 outputs
// had |H| > 13 in 18 % of entries ran 8.8 ms instead of 2.9 ms (with the CPU's flush-to-zero mode
// set, same run). The dropped values are below 4.4e-38 (fp32) or 1e-304 (fp64).
template <class S> constexpr S kExpFloor = std::is_same_v<S, float> ? S(-86) : S(-700);
template <class S> inline S exp_or_zero(S a) { return a < kExpFloor<S> ? S(0) : std::exp(a); }

template <class S> inline S gelu_scalar(S x, bool tanh_approx, S* grad) {
  const S kInvSqrt2 = S(0.70710678118654752440), kInvSqrt2Pi = S(0.39894228040143267794);
  if (!tanh_approx) {
    S cdf = S(0.5) * (S(1) + std::erf(x * kInvSqrt2));
    if (grad) *grad = cdf + x * kInvSqrt2Pi * exp_or_zero(S(-0.5) * x * x);
    return x * cdf;
  }
  const S kBeta = S(0.79788456080286535588), kKappa = S(0.044715);
  S t = std::tanh(kBeta * (x + kKappa * x * x * x));
  if (grad) *grad = S(0.5) * (S(1) + t) + S(0.5) * x * (S(1) - t * t) * kBeta * (S(1) + S(3) * kKappa * x * x);
  return S(0.5) * x * (S(1) + t);
}

// y = GELU(x) over n contiguous values (y may be x), and grad = GELU'(x) if given.
template <class S> inline void gelu(const S* x, S* y, S* grad, int64_t n, bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_scalar(x[i], tanh_approx, grad ? grad + i : nullptr);
}
template <class S> inline void gelu_inplace(S* y, S* grad, int64_t n, bool tanh_approx) { gelu(y, y, grad, n, tanh_approx); }

// Loads/stores from any storage type into the compute vector.
template <class S> inline VecG<S> load_as(const S* p, int m) { return VecG<S>::load(p, m); }
inline VecG<float> load_as(const bf16* p, int m) {
  VecG<float> r; for (int i = 0; i < kLanes; ++i) r.v[i] = i < m ? bf16_to_float(p[i]) : 0.f; return r;
}
template <class S> inline void store_as(S* p, const VecG<S>& v, int m) { v.store(p, m); }
inline void store_as(bf16* p, const VecG<float>& v, int m) {
  for (int i = 0; i < m; ++i) p[i] = float_to_bf16(v.v[i]);
}

#if defined(MK_AVX512)
// ---------------------------------------------------------------------------------------------
struct Vec512 {
  using scalar = float;
  using Mask = __mmask16;
  __m512 v;

  static Mask mask(int n) { return Mask(n >= 16 ? 0xffff : (1u << n) - 1u); }
  static Vec512 zero() { return {_mm512_setzero_ps()}; }
  static Vec512 set1(float s) { return {_mm512_set1_ps(s)}; }
  static Vec512 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec512 load(const float* p, Mask m) { return {_mm512_maskz_loadu_ps(m, p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store(float* p, Mask m) const { _mm512_mask_storeu_ps(p, m, v); }
  Vec512 keep(Mask m) const { return {_mm512_maskz_mov_ps(m, v)}; }  // zero the lanes outside m
  float reduce_add() const { return _mm512_reduce_add_ps(v); }
};
// Free functions, not in-class friends: GCC does not apply `#pragma GCC target` to the latter.
inline Vec512 operator+(Vec512 a, Vec512 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec512 operator-(Vec512 a, Vec512 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec512 operator*(Vec512 a, Vec512 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec512 fmadd(Vec512 a, Vec512 b, Vec512 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec512 operator/(Vec512 a, Vec512 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline Vec512 sqrt(Vec512 a) { return {_mm512_sqrt_ps(a.v)}; }

inline Vec512 load_as(const float* p, __mmask16 m) { return Vec512::load(p, m); }
inline Vec512 load_as(const bf16* p, __mmask16 m) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
}
inline void store_as(float* p, Vec512 v, __mmask16 m) { v.store(p, m); }
// fp32 -> bf16 bits in the low half of each 32-bit lane: round to nearest even, as torch rounds,
// NaN kept NaN by setting its quiet bit (truncation alone could leave an all-zero mantissa: inf).
inline __m512i bf16_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __m512i quiet_nan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), quiet_nan);
}
inline void store_as(bf16* p, Vec512 v, __mmask16 m) {
#if defined(MK_BF16_DOT) && !defined(MK_BF16_DOT_EMULATED)
  // vcvtneps2bf16 rounds exactly as bf16_bits, NaN included, in one instruction instead of eight,
  // but flushes denormal inputs to zero: vectors holding one (never, in practice) take bf16_bits.
  if (__builtin_expect(_mm512_mask_fpclass_ps_mask(m, v.v, 0x20) == 0, 1)) {
    _mm256_mask_storeu_epi16(p, m, _mm256_castps_si256((__m256)_mm512_cvtneps_pbh(v.v)));
    return;
  }
#endif
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(bf16_bits(v.v)));
}

// The transcendental kernels below work on N independent vectors statement by statement. Their
// dependency chains are ~30 operations long, so one vector at a time leaves the core waiting on
// latency; four interleaved ran GELU 1.7x faster (8.9 vs 14.9 ns per vector).
#define MK_EACH(stmt) _Pragma("GCC unroll 8") for (int q = 0; q < N; ++q) { stmt; }

// e[q] = exp(x[q]) = 2^n e^r, |r| <= ln2/2, with Cephes' expf polynomial; scalef handles
// overflow and NaN. Below kExpFloor the result is 0 (exp_or_zero): x is raised to the floor first,
// so n >= -124 and scalef never forms a denormal, then those lanes are zeroed.
template <int N> inline void exp512(const __m512* x_in, __m512* e) {
  const __m512 floor = _mm512_set1_ps(kExpFloor<float>);
  __m512 x[N], n[N], r[N], p[N];
  __mmask16 keep[N];
  MK_EACH(keep[q] = _mm512_cmp_ps_mask(x_in[q], floor, _CMP_NLT_UQ))  // true for NaN
  MK_EACH(x[q] = _mm512_max_ps(floor, x_in[q]))  // the second operand (NaN) where either is NaN
  MK_EACH(n[q] = _mm512_roundscale_ps(_mm512_mul_ps(x[q], _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
  MK_EACH(r[q] = _mm512_fnmadd_ps(n[q], _mm512_set1_ps(0.693359375f), x[q]))
  MK_EACH(r[q] = _mm512_fnmadd_ps(n[q], _mm512_set1_ps(-2.12194440e-4f), r[q]))
  MK_EACH(p[q] = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r[q], _mm512_set1_ps(1.3981999507e-3f)))
  MK_EACH(p[q] = _mm512_fmadd_ps(p[q], r[q], _mm512_set1_ps(8.3334519073e-3f)))
  MK_EACH(p[q] = _mm512_fmadd_ps(p[q], r[q], _mm512_set1_ps(4.1665795894e-2f)))
  MK_EACH(p[q] = _mm512_fmadd_ps(p[q], r[q], _mm512_set1_ps(1.6666665459e-1f)))
  MK_EACH(p[q] = _mm512_fmadd_ps(p[q], r[q], _mm512_set1_ps(5.0000001201e-1f)))
  MK_EACH(p[q] = _mm512_fmadd_ps(p[q], _mm512_mul_ps(r[q], r[q]), _mm512_add_ps(r[q], _mm512_set1_ps(1.f))))
  MK_EACH(e[q] = _mm512_maskz_mov_ps(keep[q], _mm512_scalef_ps(p[q], n[q])))
}

// The exact GELU's Phi(x) = Q(-x) for x < 0 and 1 - Q(x) for x >= 0, with Q(t) = erfc(t/sqrt2)/2
// on t = |x| < 5.5 in 32 pieces of width h = 5.5/32, each a degree-5 polynomial in u = t/h - i
// (least squares on Chebyshev nodes, weighted for relative error; fitted in float64, rounded to
// float). Evaluated in float: |Phi error| < 7e-8 everywhere, Q's relative error < 2.1e-6 down to
// t = 5.4; beyond 5.5, Q < 2e-8 is taken as 0. Per vector that is ~20 operations instead of the
// ~33 of Abramowitz-Stegun 7.1.26 with an exp (this file's previous method), since vpermt2ps picks
// a coefficient for each lane from two registers in one operation.
constexpr int kPhiPieces = 32, kPhiDegree = 5;
constexpr float kPhiRange = 5.5f;
alignas(64) inline constexpr float kPhiCoef[kPhiDegree + 1][kPhiPieces] = {
    {0.5f, 0.431767911f, 0.365517139f, 0.303058177f, 0.245883852f, 0.195066825f,
     0.151211798f, 0.114463978f, 0.0845657215f, 0.0609466955f, 0.0428299531f, 0.0293372106f,
     0.0195800792f, 0.0127292043f, 0.00805861596f, 0.00496690301f, 0.00297976332f, 0.00173965574f,
     0.000988219748f, 0.000546113937f, 0.000293555349f, 0.000153467816f, 7.80214323e-05f, 3.85685562e-05f,
     1.85367371e-05f, 8.66113987e-06f, 3.93390064e-06f, 1.73678472e-06f, 7.45269233e-07f, 3.10812027e-07f,
     1.25972207e-07f, 4.96158954e-08f},
    {-0.0685682073f, -0.0675628558f, -0.0646344051f, -0.0600329936f, -0.0541360751f, -0.0473973453f,
     -0.0402894877f, -0.0332506411f, -0.0266427342f, -0.0207265988f, -0.0156548098f, -0.0114798993f,
     -0.00817332603f, -0.0056497613f, -0.00379168149f, -0.00247060927f, -0.00156295614f, -0.000959975063f,
     -0.000572457968f, -0.000331434509f, -0.000186304052f, -0.000101675731f, -5.38744353e-05f, -2.77152376e-05f,
     -1.38428295e-05f, -6.71276666e-06f, -3.16044748e-06f, -1.44466117e-06f, -6.41141298e-07f, -2.76256088e-07f,
     -1.1556871e-07f, -4.69395545e-08f},
    {-6.75324285e-09f, 0.000997916795f, 0.00190933491f, 0.00266011804f, 0.00319843576f, 0.003500388f,
     0.00357056153f, 0.00343789719f, 0.00314821862f, 0.00275529362f, 0.00231231051f, 0.00186521909f,
     0.00144870381f, 0.00108485809f, 0.000784077216f, 0.000547385251f, 0.000369370857f, 0.00024104715f,
     0.000152196793f, 9.30113456e-05f, 5.50339719e-05f, 3.15360885e-05f, 1.75052301e-05f, 9.41452527e-06f,
     4.90654702e-06f, 2.47837716e-06f, 1.2134775e-06f, 5.7599857e-07f, 2.65083628e-07f, 1.18292725e-07f,
     5.11898861e-08f, 2.14830056e-08f},
    {0.000337622449f, 0.00032290598f, 0.000280754524f, 0.000217137582f, 0.000140698729f, 6.11292562e-05f,
     -1.25236584e-05f, -7.32406988e-05f, -0.000116848569f, -0.000142183664f, -0.000150679873f, -0.000145578f,
     -0.000130999018f, -0.000111098845f, -8.94491604e-05f, -6.86998319e-05f, -5.05016978e-05f, -3.56196433e-05f,
     -2.41494163e-05f, -1.57607356e-05f, -9.9126346e-06f, -6.01367128e-06f, -3.52169673e-06f, -1.99202509e-06f,
     -1.08891572e-06f, -5.75496188e-07f, -2.94173731e-07f, -1.45485927e-07f, -6.96334084e-08f, -3.2262836e-08f,
     -1.44734331e-08f, -6.28795904e-09f},
    {-4.53984121e-08f, -7.45832858e-06f, -1.3790539e-05f, -1.81870982e-05f, -2.01695111e-05f, -1.97019435e-05f,
     -1.71545162e-05f, -1.31827464e-05f, -8.56254883e-06f, -4.02664e-06f, -1.40365827e-07f, 2.76216565e-06f,
     4.58044724e-06f, 5.40285509e-06f, 5.43722717e-06f, 4.93896368e-06f, 4.15287514e-06f, 3.27663679e-06f,
     2.44602143e-06f, 1.7370063e-06f, 1.17785976e-06f, 7.64773745e-07f, 4.76454886e-07f, 2.85272705e-07f,
     1.64363115e-07f, 9.12230007e-08f, 4.88124599e-08f, 2.5199542e-08f, 1.25588935e-08f, 6.04546857e-09f,
     2.81203394e-09f, 1.26441646e-09f},
    {-1.46586126e-06f, -1.25395547e-06f, -8.7310616e-07f, -3.97104969e-07f, 8.700124e-08f, 4.99107728e-07f,
     7.82596885e-07f, 9.13203792e-07f, 8.98903693e-07f, 7.72288786e-07f, 5.787752e-07f, 3.64489125e-07f,
     1.66927563e-07f, 9.99061989e-09f, -9.6608062e-08f, -1.54702434e-07f, -1.73447376e-07f, -1.65020182e-07f,
     -1.41263072e-07f, -1.11677501e-07f, -8.26908035e-08f, -5.78381858e-08f, -3.84311569e-08f, -2.43541614e-08f,
     -1.47616133e-08f, -8.57653948e-09f, -4.78459938e-09f, -2.56638866e-09f, -1.32501443e-09f, -6.59075516e-10f,
     -3.16079968e-10f, -1.46246862e-10f},
};

// The same pieces with degree-3 polynomials, for GELU values that are rounded to bf16 right away
// (the bf16-dot forwards' GEMM operands): |Phi error| < 1.9e-7, Q's relative error < 2.1e-4 down
// to t = 5.4, against bf16's half-ulp of 2e-3; two vpermt2ps and two FMAs fewer per vector.
constexpr int kPhiDegreeBf16 = 3;
alignas(64) inline constexpr float kPhiCoefBf16[kPhiDegreeBf16 + 1][kPhiPieces] = {
    {0.5f, 0.431768f, 0.365517288f, 0.303058326f, 0.245884031f, 0.195066988f,
     0.151211932f, 0.114464074f, 0.0845657811f, 0.0609467179f, 0.042829942f, 0.0293371752f,
     0.0195800308f, 0.0127291512f, 0.00805856381f, 0.00496685645f, 0.0029797249f, 0.00173962582f,
     0.000988197513f, 0.000546098221f, 0.000293544726f, 0.000153460933f, 7.80171467e-05f, 3.85659878e-05f,
     1.85352565e-05f, 8.66031769e-06f, 3.93345999e-06f, 1.73655667e-06f, 7.45155319e-07f, 3.10757031e-07f,
     1.25946556e-07f, 4.96043278e-08f},
    {-0.0685690269f, -0.0675655082f, -0.0646385252f, -0.0600380376f, -0.0541414022f, -0.0474023446f,
     -0.0402936712f, -0.0332536921f, -0.0266445503f, -0.0207272526f, -0.0156545043f, -0.0114789074f,
     -0.00817193463f, -0.00564822229f, -0.00379018718f, -0.00246928376f, -0.00156186067f, -0.000959122321f,
     -0.000571828277f, -0.000330991403f, -0.000186005913f, -0.000101483463f, -5.37553678e-05f, -2.76443243e-05f,
     -1.38021678e-05f, -6.69029578e-06f, -3.1484708e-06f, -1.43850014e-06f, -6.38080735e-07f, -2.74787197e-07f,
     -1.14887328e-07f, -4.66339429e-08f},
    {3.58854527e-06f, 0.00101051154f, 0.00192918419f, 0.00268453965f, 0.00322431629f, 0.00352473394f,
     0.00359097077f, 0.00345285959f, 0.00315720635f, 0.00275865593f, 0.00231103436f, 0.00186062849f,
     0.00144217629f, 0.00107760751f, 0.000777026988f, 0.000541129732f, 0.000364203617f, 0.000237028231f,
     0.000149232728f, 9.09284572e-05f, 5.3634707e-05f, 3.0635194e-05f, 1.69482919e-05f, 9.08343645e-06f,
     4.71705061e-06f, 2.37385848e-06f, 1.15787827e-06f, 5.4745442e-07f, 2.50932771e-07f, 1.11515085e-07f,
     4.80523852e-08f, 2.00787085e-08f},
    {0.000333340518f, 0.000304241636f, 0.000250343408f, 0.000179145136f, 0.000100027057f, 2.2541979e-05f,
     -4.51600099e-05f, -9.74495197e-05f, -0.000131703215f, -0.000148156469f, -0.000149270301f, -0.000138842384f,
     -0.000121099365f, -9.99548502e-05f, -7.85322991e-05f, -5.89665942e-05f, -4.24339887e-05f, -2.93284502e-05f,
     -1.94999247e-05f, -1.24880444e-05f, -7.71103259e-06f, -4.5945626e-06f, -2.64352866e-06f, -1.46952993e-06f,
     -7.89651892e-07f, -4.10330301e-07f, -2.06264872e-07f, -1.00332976e-07f, -4.72394781e-08f, -2.15333547e-08f,
     -9.50503942e-09f, -4.06361211e-09f},
};

// x[q] = GELU(x[q]) in place, and grad[q] = GELU'(x[q]) = Phi(x) + x phi(x) if grad is given.
// tanh: 0.5 x (1 + tanh(y)), y = sqrt(2/pi)(x + 0.044715 x^3), tanh(y) = 1 - 2/(exp(2y) + 1).
// kDeg: kPhiDegree (kPhiCoef), or kPhiDegreeBf16 (kPhiCoefBf16) where the result goes to bf16.
template <int N, int kDeg = kPhiDegree> inline void gelu512(__m512* x, __m512* grad, bool tanh_approx) {
  static_assert(kDeg == kPhiDegree || kDeg == kPhiDegreeBf16, "no such table");
  const __m512 one = _mm512_set1_ps(1.f), half = _mm512_set1_ps(0.5f);
  __m512 cdf[N], e[N], t[N];
  if (!tanh_approx) {
    __m512 tab[kDeg + 1][2], u[N], p[N];
    __m512i piece[N];
    __mmask16 inside[N];
    for (int k = 0; k <= kDeg; ++k)
      for (int h = 0; h < 2; ++h) tab[k][h] = _mm512_load_ps((kDeg == kPhiDegree ? kPhiCoef[k] : kPhiCoefBf16[k]) + h * 16);
    MK_EACH({
      const __m512 t = _mm512_abs_ps(x[q]);
      inside[q] = _mm512_cmp_ps_mask(t, _mm512_set1_ps(kPhiRange), _CMP_LT_OQ);  // false for NaN
      // min(v, cap) returns cap for NaN v: a valid piece; NaN x still gives NaN x * Phi.
      const __m512 s = _mm512_min_ps(_mm512_mul_ps(t, _mm512_set1_ps(kPhiPieces / kPhiRange)),
                                     _mm512_set1_ps(kPhiPieces - 2e-6f));
      const __m512 fl = _mm512_roundscale_ps(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      piece[q] = _mm512_cvtps_epi32(fl);
      u[q] = _mm512_sub_ps(s, fl);
    })
    MK_EACH(p[q] = _mm512_permutex2var_ps(tab[kDeg][0], piece[q], tab[kDeg][1]))
    for (int k = kDeg - 1; k >= 0; --k)
      MK_EACH(p[q] = _mm512_fmadd_ps(p[q], u[q], _mm512_permutex2var_ps(tab[k][0], piece[q], tab[k][1])))
    MK_EACH({
      const __m512 qt = _mm512_maskz_mov_ps(inside[q], p[q]);  // Q(|x|), 0 past the range
      const __mmask16 neg = _mm512_cmp_ps_mask(x[q], _mm512_setzero_ps(), _CMP_LT_OQ);
      cdf[q] = _mm512_mask_mov_ps(_mm512_sub_ps(one, qt), neg, qt);
    })
    if (grad) {
      __m512 a[N];
      MK_EACH(a[q] = _mm512_mul_ps(_mm512_mul_ps(x[q], x[q]), _mm512_set1_ps(-0.5f)))
      exp512<N>(a, e);
      MK_EACH(grad[q] = _mm512_fmadd_ps(_mm512_mul_ps(x[q], _mm512_set1_ps(0.39894228040143268f)), e[q], cdf[q]))
    }
  } else {
    const __m512 beta = _mm512_set1_ps(0.79788456080286536f);
    __m512 x2[N], y2[N];
    MK_EACH(x2[q] = _mm512_mul_ps(x[q], x[q]))
    MK_EACH(y2[q] = _mm512_mul_ps(_mm512_set1_ps(2.f * 0.79788456080286536f),
                                  _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), x2[q]), x[q], x[q])))
    exp512<N>(y2, e);
    MK_EACH(t[q] = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.f), _mm512_add_ps(e[q], one))))
    MK_EACH(cdf[q] = _mm512_mul_ps(half, _mm512_add_ps(one, t[q])))
    if (grad) MK_EACH({
      const __m512 dy = _mm512_mul_ps(beta, _mm512_fmadd_ps(_mm512_set1_ps(3.f * 0.044715f), x2[q], one));
      const __m512 sech2 = _mm512_fnmadd_ps(t[q], t[q], one);
      grad[q] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(half, x[q]), sech2), dy, cdf[q]);
    })
  }
  MK_EACH(x[q] = _mm512_mul_ps(x[q], cdf[q]))
}
#undef MK_EACH

// gelu for float: four vectors at a time, then the tail one masked vector at a time.
inline void gelu(const float* x, float* y, float* grad, int64_t n, bool tanh_approx) {
  constexpr int kPack = 4;
  int64_t i = 0;
  for (; i + kPack * kLanes <= n; i += kPack * kLanes) {
    __m512 v[kPack], g[kPack];
    for (int q = 0; q < kPack; ++q) v[q] = _mm512_loadu_ps(x + i + q * kLanes);
    gelu512<kPack>(v, grad ? g : nullptr, tanh_approx);
    for (int q = 0; q < kPack; ++q) {
      _mm512_storeu_ps(y + i + q * kLanes, v[q]);
      if (grad) _mm512_storeu_ps(grad + i + q * kLanes, g[q]);
    }
  }
  for (; i < n; i += kLanes) {
    const __mmask16 m = Vec512::mask(int(imin64(kLanes, n - i)));
    __m512 v = _mm512_maskz_loadu_ps(m, x + i), g;
    gelu512<1>(&v, grad ? &g : nullptr, tanh_approx);
    _mm512_mask_storeu_ps(y + i, m, v);
    if (grad) _mm512_mask_storeu_ps(grad + i, m, g);
  }
}
inline void gelu_inplace(float* y, float* grad, int64_t n, bool tanh_approx) { gelu(y, y, grad, n, tanh_approx); }

template <class S> struct VecFor;
template <> struct VecFor<float> { using type = Vec512; };
template <> struct VecFor<double> { using type = VecG<double>; };
#else
template <class S> struct VecFor { using type = VecG<S>; };
#endif

template <class S> using Vec = typename VecFor<S>::type;

}}}  // namespace mixerkern::cpu::MK_ISA
