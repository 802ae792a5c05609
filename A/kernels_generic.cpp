// All kernels compiled for baseline x86-64 (the portable path, also used for float64).
#define MK_ISA generic
#define MK_ISA_NAME "generic"
#include "kernel_table.h"

const mixerkern::cpu::KernelTable& mixerkern::cpu::generic_kernel_table() { return generic::kernel_table(); }
