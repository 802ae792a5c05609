// The AVX-512 tests with the bf16-dot GEMM on the real vdpbf16ps (CPUs with AVX512-BF16 only).
#define MK_ISA avx512bf16
#define MK_ISA_NAME "avx512bf16"
#define MK_AVX512 1
#define MK_BF16_DOT 1
#include "kernel_tests.h"

int run_avx512bf16_kernel_tests() { return mixerkern::cpu::avx512bf16::tests::run_all(); }
