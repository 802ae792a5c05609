// The kernel table of one ISA: included once by each per-ISA translation unit.
#pragma once
#include "channel_mixing_kernels.h"
#include "fourier_mixing_kernels.h"
#include "mixer_blocks_kernels.h"
#include "patch_embed_kernels.h"
#include "spatial_gating_kernels.h"
#include "token_mixing_kernels.h"

namespace mixerkern { namespace cpu { namespace MK_ISA {

template <class T> constexpr OpKernels<T> op_kernels() {
  return {{&token_mixing_forward<T>, &token_mixing_backward<T>},
          {&channel_mixing_forward<T>, &channel_mixing_backward<T>},
          {&spatial_gating_forward<T>, &spatial_gating_backward<T>},
          {&fourier_mixing_forward<T>, &fourier_mixing_backward<T>, &fourier_mixing_add_spectrum<T>},
          {&patch_embed_forward<T>, &patch_embed_backward<T>},
          {&mixer_blocks_forward<T>}};
}

inline const KernelTable& kernel_table() {
#if defined(MK_BF16_DOT)
  // The AVX-512 table with the kernels that use bf16 dot products: the bf16 mixing and patch
  // forwards and backwards, and the fp32 channel kernels, which take them for bf16 weights (the
  // post-norm form under autocast). Everything else (other fp32 kernels, bf16 gating and Fourier
  // mixing) is the same code, so it is taken from that table rather than compiled again.
  static const KernelTable table = [] {
    KernelTable t = avx512_kernel_table();
    t.isa = MK_ISA_NAME;
    t.b16.token = {&token_mixing_forward<bf16>, &token_mixing_backward<bf16>};
    t.b16.channel = {&channel_mixing_forward<bf16>, &channel_mixing_backward<bf16>};
    t.f32.channel = {&channel_mixing_forward<float>, &channel_mixing_backward<float>};
    t.b16.patch = {&patch_embed_forward<bf16>, &patch_embed_backward<bf16>};
    t.b16.blocks.forward = &mixer_blocks_forward<bf16>;
    t.bf16_dot = true;
    return t;
  }();
#elif defined(MK_AVX512)
  // float64 exists for gradcheck-style verification, not speed: it always runs the portable build.
  static const KernelTable table{MK_ISA_NAME, op_kernels<float>(), op_kernels<bf16>(), {}};
#else
  static const KernelTable table{MK_ISA_NAME, op_kernels<float>(), op_kernels<bf16>(), op_kernels<double>()};
#endif
  return table;
}

}}}  // namespace mixerkern::cpu::MK_ISA
