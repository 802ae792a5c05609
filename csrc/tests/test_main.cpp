// ctest entry: the portable kernels always, the AVX-512 ones where the CPU has them.
#include <cstdio>

int run_avx512_kernel_tests();
int run_generic_kernel_tests();

int main() {
  int failures = run_generic_kernel_tests();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    failures += run_avx512_kernel_tests();
  else
    std::printf("[avx512] skipped: this CPU lacks AVX-512\n");
  return failures == 0 ? 0 : 1;
}
