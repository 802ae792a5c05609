#define MK_ISA generic
#define MK_ISA_NAME "generic"
#include "kernel_tests.h"

int run_generic_kernel_tests() { return mixerkern::cpu::generic::tests::run_all(); }
