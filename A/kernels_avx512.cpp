// All kernels compiled for AVX-512 (F/BW/VL/DQ); chosen at run time only on CPUs that have it.
#define MK_ISA avx512
#define MK_ISA_NAME "avx512"
#define MK_AVX512 1
#include "kernel_table.h"

const mixerkern::cpu::KernelTable& mixerkern::cpu::avx512_kernel_table() { return avx512::kernel_table(); }
