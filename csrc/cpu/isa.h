// The CPU backend's instruction sets. Every file named *_cpu.cc is compiled once per instruction set
// (CMakeLists.txt; test/emulation/build.mjs does the same), each time into the namespace
// ss::cpu::SS_CPU_ISA with that set's flags; the machine's best set is picked at run time. A
// shipped binary therefore runs on any x86-64 and still uses AVX2 or AVX-512 where present.
//
// An op's CPU entry point is declared once per set and dispatched with two lines in its header:
//
//   SS_PER_CPU_ISA(void scanForward(const ScanForwardParams &p))
//   inline void scanForward(const ScanForwardParams &p) { SS_CALL_CPU_ISA(scanForward, p); }
#pragma once
#include <string>

namespace ss::cpu {

enum class Isa { Baseline, Avx2, Avx512 };

// The set whose code runs: the fastest this machine supports, or the one named by the
// SELECTIVE_SCAN_CPU_ISA environment variable (tests use it to run a slower path).
Isa activeIsa();
const char *isaName(Isa isa);  // baseline, avx2 or avx512

// The set to use given SELECTIVE_SCAN_CPU_ISA (null when unset or empty) and the fastest set the
// machine supports: the one named if the machine has it, else `best` with a warning that says why.
struct IsaSetting {
  Isa isa;
  std::string warning;  // empty when the variable was unset or valid
};
IsaSetting isaSetting(const char *value, Isa best);
// activeIsa() with its warning, decided once, at the first call.
const IsaSetting &activeIsaSetting();

}  // namespace ss::cpu

#if defined(__x86_64__)
#define SS_PER_CPU_ISA(...) \
  namespace baseline {      \
  __VA_ARGS__;              \
  }                         \
  namespace avx2 {          \
  __VA_ARGS__;              \
  }                         \
  namespace avx512 {        \
  __VA_ARGS__;              \
  }
#define SS_CALL_CPU_ISA(fn, ...)                                 \
  switch (::ss::cpu::activeIsa()) {                              \
    case ::ss::cpu::Isa::Avx512: return avx512::fn(__VA_ARGS__); \
    case ::ss::cpu::Isa::Avx2: return avx2::fn(__VA_ARGS__);     \
    case ::ss::cpu::Isa::Baseline: break;                        \
  }                                                              \
  return baseline::fn(__VA_ARGS__)
#else
#define SS_PER_CPU_ISA(...) \
  namespace baseline {      \
  __VA_ARGS__;              \
  }
#define SS_CALL_CPU_ISA(fn, ...) return baseline::fn(__VA_ARGS__)
#endif
