// The AVX-512 tests again, with the bf16-dot GEMM's instruction emulated (runs on any AVX-512 CPU).
#define MK_ISA avx512bf16_emulated
#define MK_ISA_NAME "avx512bf16-emulated"
#define MK_AVX512 1
#define MK_BF16_DOT 1
#define MK_BF16_DOT_EMULATED 1
#include "kernel_tests.h"

int run_avx512bf16_emulated_kernel_tests() { return mixerkern::cpu::avx512bf16_emulated::tests::run_all(); }
