// The rate of the bf16-dot GEMM (gemm_bf16.h, vdpbf16ps) against the fp32 GEMM (gemm.h) at the
// Mixer's GEMM shapes, one core, in FLOP per TSC cycle: where the bf16 table pays off (dispatch.cpp).
//
//   g++ -O3 -fno-math-errno -std=c++17 -Icsrc/cpu benchmarks/gemm_bf16_rate.cpp -o /tmp/gemm_bf16_rate
//   /tmp/gemm_bf16_rate [--force]
//
// --force runs where CPUID hides AVX512-BF16 (a hypervisor may, on hardware that has it); on a CPU
// without it the first vdpbf16ps then dies of SIGILL.
#define MK_ISA avx512bf16
#define MK_AVX512 1
#define MK_BF16_DOT 1
#include "gemm_bf16.h"

#include <x86intrin.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using namespace mixerkern::cpu;
using namespace mixerkern::cpu::avx512bf16;
using mixerkern::bf16;

template <class F>
double best_cycles(int reps, F&& f) {
  double best = 1e300;
  for (int round = 0; round < 7; ++round) {
    const auto t0 = __rdtsc();
    for (int r = 0; r < reps; ++r) f();
    best = std::min(best, double(__rdtsc() - t0) / reps);
  }
  return best;
}

int main(int argc, char** argv) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16") && !(argc > 1 && !std::strcmp(argv[1], "--force"))) {
    std::printf("CPUID reports no AVX512-BF16 (try --force if the hardware has it)\n");
    return 1;
  }
  // (M, N, K): token fc1/fc2 (H x 64-column strips, depth P or H), channel fc1/fc2 (row blocks).
  const int shapes[][3] = {{64, 64, 64}, {64, 256, 64}, {64, 64, 256}, {192, 256, 64}, {192, 64, 256}, {256, 256, 256}};
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2], K2 = depth_pairs(K);
    std::vector<float> a(size_t(M) * K), b(size_t(K) * N), c(size_t(M) * N);
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (float& v : a) v = normal(gen);
    for (float& v : b) v = normal(gen);
    std::vector<bf16> ap(size_t(M) * 2 * K2), bp(size_t(ceil_div(N, kStripCols)) * K2 * kPairStripElems);
    pack_bf16_rows(a.data(), K, M, K, ap.data());
    for (int j0 = 0; j0 < N; j0 += kStripCols)
      pack_bf16_pairs(b.data() + j0, N, K, imin(kStripCols, N - j0), bp.data() + size_t(j0 / kStripCols) * K2 * kPairStripElems);
    StoreTo<Vec512> out{c.data(), N};
    const int reps = 200000000 / (M * N * K) + 1;
    const double bf = best_cycles(reps, [&] { gemm_bf16(M, N, K2, ap.data(), 2 * K2, bp.data(), out); });
    const double fp = best_cycles(reps, [&] { gemm<Vec512>(M, N, K, a.data(), K, 1, b.data(), N, out); });
    const double flops = 2.0 * M * N * K;
    std::printf("M=%3d N=%3d K=%3d: bf16 %5.1f, fp32 %5.1f FLOP/cycle: bf16/fp32 %.2fx\n", M, N, K, flops / bf,
                flops / fp, fp / bf);
  }
}
