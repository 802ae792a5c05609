#define MK_ISA avx512
#define MK_ISA_NAME "avx512"
#define MK_AVX512 1
#include "kernel_tests.h"

int run_avx512_kernel_tests() { return mixerkern::cpu::avx512::tests::run_all(); }
