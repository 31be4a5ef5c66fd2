// Benchmark support: this instruction set's exp2 throughput (the compute floor of the roofline).
#include <cstdint>

#include "../cpu/simd.h"
#include "cpu_backend.h"

namespace ss::cpu::SS_CPU_ISA {

float exp2Work(int64_t count) {
  using simd::kLanes;
  using simd::splat;
  using simd::Vec;
  constexpr int kChains = 8;  // independent dependency chains, like the N states of a step
  Vec x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = splat(-0.001f * float(c + 1));
  const Vec scale = splat(0.999f);
  for (int64_t i = 0; i < count; i += int64_t(kChains) * kLanes)
    for (int c = 0; c < kChains; ++c) x[c] = simd::exp2(x[c]) * scale - 1.0f;  // stays in [-1, 0]
  Vec sum = {};
  for (int c = 0; c < kChains; ++c) sum += x[c];
  return simd::horizontalSum(sum);
}

}  // namespace ss::cpu::SS_CPU_ISA
