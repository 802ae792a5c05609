// Run-time choice of the CPU kernels' instruction set: AVX-512 with AVX512-BF16 dot products for
// bf16 where those pay off (below), AVX-512 where the CPU has it, the portable build otherwise.
// MIXERKERN_CPU_ISA=auto|avx512bf16|avx512|generic|avx512bf16-emulated (read at load) or
// mixerkern_cpu::set_isa overrides it; tests use that to exercise the portable path on AVX-512
// machines, and the bf16-dot path (its dot product emulated) on CPUs without AVX512-BF16.
#include "dispatch.h"

#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace mixerkern { namespace cpu {
namespace {

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

bool cpu_has_avx512_bf16() {
  return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
}

// vdpbf16ps pays off where it does twice the FLOPs of an fp32 FMA per cycle: AMD's Zen 4 and later
// (on a Zen 5 EPYC, family 26, gemm_bf16 ran at 2.06-2.18x the fp32 gemm at the Mixer's shapes,
// benchmarks/gemm_bf16_rate.cpp, RESULTS.md 2026-12-07). Not on Intel's Xeons, whose bf16 speed is
// AMX's: on a model 207 (Emerald Rapids; its hypervisor hides AVX512-BF16, which still executes),
// gemm_bf16 ran at 0.54-0.64x the fp32 gemm (benchmarks/gemm_bf16_rate.cpp --force) and the bf16
// model at 0.58x of fp32 (RESULTS.md, 2026-11-22).
bool bf16_dot_pays_off() {
  return cpu_has_avx512_bf16() && __builtin_cpu_is("amd");
}

const KernelTable* table_for(const std::string& isa) {
  if (isa == "auto")
    return bf16_dot_pays_off()   ? &avx512bf16_kernel_table()
           : cpu_has_avx512()    ? &avx512_kernel_table()
                                 : &generic_kernel_table();
  if (isa == "generic") return &generic_kernel_table();
  if (isa == "avx512" || isa == "avx512bf16-emulated") {
    TORCH_CHECK(cpu_has_avx512(), "mixerkern: isa='", isa, "' requested but this CPU lacks AVX-512 F/BW/VL/DQ");
    return isa == "avx512" ? &avx512_kernel_table() : &avx512bf16_emulated_kernel_table();
  }
  if (isa == "avx512bf16") {
    TORCH_CHECK(cpu_has_avx512_bf16(), "mixerkern: isa='avx512bf16' requested but this CPU lacks AVX512-BF16 ",
                "(or AVX-512 F/BW/VL/DQ)");
    return &avx512bf16_kernel_table();
  }
  TORCH_CHECK(false, "mixerkern: isa must be 'auto', 'avx512bf16', 'avx512', 'generic' or 'avx512bf16-emulated', got '",
              isa, "'");
}

const KernelTable* initial_table() {
  const char* env = std::getenv("MIXERKERN_CPU_ISA");
  if (env == nullptr || *env == '\0') return table_for("auto");
  try {
    return table_for(env);
  } catch (const c10::Error& e) {
    TORCH_WARN("MIXERKERN_CPU_ISA ignored: ", e.msg());
    return table_for("auto");
  }
}

std::atomic<const KernelTable*>& active() {
  static std::atomic<const KernelTable*> table{initial_table()};
  return table;
}

std::string get_isa() { return active().load()->isa; }
std::string set_isa(std::string isa) {
  active().store(table_for(isa));
  return get_isa();
}

}  // namespace

const KernelTable& active_kernels() { return *active().load(); }

TORCH_LIBRARY(mixerkern_cpu, m) {
  m.def("get_isa() -> str", &get_isa);
  m.def("set_isa(str isa) -> str", &set_isa);
}

}}  // namespace mixerkern::cpu
