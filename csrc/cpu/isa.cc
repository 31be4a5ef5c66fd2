#include "isa.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace ss::cpu {

namespace {
Isa bestIsa() {
  Isa best = Isa::Baseline;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    best = Isa::Avx2;
  if (best == Isa::Avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    best = Isa::Avx512;
#endif
  return best;
}
}  // namespace

IsaSetting isaSetting(const char *value, Isa best) {
  if (value == nullptr || *value == '\0') return {best, ""};
  const std::string shown = "SELECTIVE_SCAN_CPU_ISA='" + std::string(value).substr(0, 40) + "'";
  // A slower set on request, never a faster one than the machine has.
  for (Isa isa : {Isa::Baseline, Isa::Avx2, Isa::Avx512}) {
    if (std::strcmp(isaName(isa), value) != 0) continue;
    if (int(isa) <= int(best)) return {isa, ""};
    return {best, shown + ": this CPU does not support " + isaName(isa) + "; using " + isaName(best)};
  }
  return {best, shown + " is not one of baseline, avx2, avx512; using " + isaName(best)};
}

const IsaSetting &activeIsaSetting() {
  static const IsaSetting setting = isaSetting(std::getenv("SELECTIVE_SCAN_CPU_ISA"), bestIsa());
  return setting;
}

Isa activeIsa() { return activeIsaSetting().isa; }

const char *isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Baseline: break;
  }
  return "baseline";
}

}  // namespace ss::cpu
