// ctest entry: the portable kernels always; the AVX-512 ones, and the bf16-dot GEMM with its
// instruction emulated, where the CPU has AVX-512; that GEMM on the real instruction where it has
// AVX512-BF16.
#include <cstdio>

int run_avx512_kernel_tests();
int run_avx512bf16_emulated_kernel_tests();
int run_avx512bf16_kernel_tests();
int run_generic_kernel_tests();

int main() {
  int failures = run_generic_kernel_tests();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    failures += run_avx512_kernel_tests();
    failures += run_avx512bf16_emulated_kernel_tests();
    if (__builtin_cpu_supports("avx512bf16")) failures += run_avx512bf16_kernel_tests();
    else std::printf("[avx512bf16] skipped: this CPU lacks AVX512-BF16\n");
  } else {
    std::printf("[avx512] skipped: this CPU lacks AVX-512\n");
  }
  return failures == 0 ? 0 : 1;
}
