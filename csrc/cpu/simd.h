// SIMD vectors for the CPU kernels, as GCC vector extensions: one source, compiled once per
// instruction set (see CMakeLists.txt), with the vector width picked by the compiler flags.
// Included only by scan_kernels.cc.
#pragma once
#include <cstdint>

namespace ss::cpu::simd {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float Vec __attribute__((vector_size(kLanes * 4)));
typedef int32_t IVec __attribute__((vector_size(kLanes * 4)));
// The same vector with 4-byte alignment, for unaligned loads and stores.
typedef float UnalignedVec __attribute__((vector_size(kLanes * 4), aligned(4)));

inline Vec splat(float x) { return Vec{} + x; }
inline Vec loadu(const float *p) { return *reinterpret_cast<const UnalignedVec *>(p); }
inline void storeu(float *p, Vec v) { *reinterpret_cast<UnalignedVec *>(p) = v; }

inline float horizontalSum(Vec v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// 2^x for every lane, to about 2 ulp (Cephes' exp2f polynomial). x is split as r + f with r an
// integer and |f| <= 1/2; 2^f comes from a degree-6 polynomial and 2^r from the exponent bits.
// x <= -127 gives 0 (results below the normal range flush to zero), x >= 127.5 gives +Inf, NaN
// stays NaN.
inline Vec exp2(Vec x) {
  const Vec lo = splat(-127.0f), hi = splat(128.0f);
  x = x < lo ? lo : x;  // NaN compares false and passes through both clamps
  x = x > hi ? hi : x;
  const Vec roundingMagic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const Vec r = (x + roundingMagic) - roundingMagic;
  const Vec f = x - r;
  Vec p = splat(1.535336188319500e-4f);
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const IVec exponentBits = (__builtin_convertvector(r, IVec) + 127) << 23;
  return p * reinterpret_cast<const Vec &>(exponentBits);
}

}  // namespace ss::cpu::simd
