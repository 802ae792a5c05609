// Torch-free types shared by the kernels and the torch glue.
#pragma once
#include <cstdint>

namespace mixerkern {

// bfloat16 storage: the top 16 bits of an IEEE float32.
struct bf16 {
  uint16_t bits;
};

// Compute type for a storage type: bf16 and float compute in float, double in double.
template <class T> struct compute { using type = float; };
template <> struct compute<double> { using type = double; };
template <class T> using compute_t = typename compute<T>::type;

}  // namespace mixerkern
