// The AVX-512 kernels with bf16 forwards on AVX512-BF16 dot products (gemm_bf16.h); chosen at run
// time only on CPUs that have AVX512-BF16.
#define MK_ISA avx512bf16
#define MK_ISA_NAME "avx512bf16"
#define MK_AVX512 1
#define MK_BF16_DOT 1
#include "kernel_table.h"

const mixerkern::cpu::KernelTable& mixerkern::cpu::avx512bf16_kernel_table() { return avx512bf16::kernel_table(); }
