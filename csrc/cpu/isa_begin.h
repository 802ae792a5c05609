// Included (via vec.h) by each per-ISA translation unit, after it defines MK_ISA (the namespace
// name) and, for the AVX-512 unit, MK_AVX512. Everything compiled after this is specific to that ISA and lives
// in namespace mixerkern::cpu::MK_ISA, so the same templates compiled for two ISAs never collide
// at link time (no std:: templates are instantiated in these units for the same reason).
#pragma once
#if !defined(MK_ISA)
#error "define MK_ISA before including the kernel headers"
#endif
#if defined(MK_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
#endif
#if defined(MK_BF16_DOT) && !defined(MK_BF16_DOT_EMULATED)
#pragma GCC target("avx512bf16")
#endif
