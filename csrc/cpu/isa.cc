#include "isa.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace ss::cpu {

Isa activeIsa() {
  static const Isa chosen = [] {
    Isa best = Isa::Baseline;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
      best = Isa::Avx2;
    if (best == Isa::Avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      best = Isa::Avx512;
#endif
    // A slower set on request (never a faster one than the machine has).
    if (const char *forced = std::getenv("SELECTIVE_SCAN_CPU_ISA")) {
      for (Isa isa : {Isa::Baseline, Isa::Avx2, Isa::Avx512})
        if (int(isa) <= int(best) && std::strcmp(isaName(isa), forced) == 0) return isa;
    }
    return best;
  }();
  return chosen;
}

const char *isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Baseline: break;
  }
  return "baseline";
}

}  // namespace ss::cpu
