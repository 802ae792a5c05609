#pragma once
#include "mixing_params.h"

namespace mixerkern { namespace cpu {
// The kernel table of the instruction set in use (see dispatch.cpp).
const KernelTable& active_kernels();
}}  // namespace mixerkern::cpu
// B
