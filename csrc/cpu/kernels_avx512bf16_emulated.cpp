// The avx512bf16 table with vdpbf16ps emulated by FMAs (gemm_bf16.h): the same layouts and loops,
// runnable on any AVX-512 CPU. Never chosen automatically; tests select it to check that path.
#define MK_ISA avx512bf16_emulated
#define MK_ISA_NAME "avx512bf16-emulated"
#define MK_AVX512 1
#define MK_BF16_DOT 1
#define MK_BF16_DOT_EMULATED 1
#include "kernel_table.h"

const mixerkern::cpu::KernelTable& mixerkern::cpu::avx512bf16_emulated_kernel_table() {
  return avx512bf16_emulated::kernel_table();
}
