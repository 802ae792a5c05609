#pragma once
#include <type_traits>

#include "mixing_params.h"

namespace mixerkern { namespace cpu {
// The kernel table of the instruction set in use (see dispatch.cpp).
const KernelTable& active_kernels();

// Every op's kernels for storage type T: float and bf16 from the active table, float64 always from
// the portable one (see kernel_table.h).
template <class T> const OpKernels<T>& op_kernels_for() {
  if constexpr (std::is_same_v<T, float>) return active_kernels().f32;
  else if constexpr (std::is_same_v<T, double>) return generic_kernel_table().f64;
  else return active_kernels().b16;
}
}}  // namespace mixerkern::cpu
