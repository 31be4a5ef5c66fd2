// SIMD vectors for the CPU kernels, as GCC vector extensions: one source, compiled once per
// instruction set (cpu/isa.h), with the vector width picked by the compiler flags. Included only by
// *_cpu.cc files. Everything lives in the instruction set's own namespace: an inline function with
// the same name and signature in two sets (splat(float), say) would otherwise be one symbol to the
// linker, which could keep the AVX-512 copy for the baseline code.
#pragma once
#include <cstdint>

#include "../common/scan_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#ifndef SS_CPU_ISA
#error "simd.h is for *_cpu.cc files, compiled once per instruction set with SS_CPU_ISA defined"
#endif

namespace ss::cpu::SS_CPU_ISA::simd {

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

// A few operations GCC does not map to one instruction from generic vector code: broadcast, and
// max/min. maxNaN(a, x) = a > x ? a : x, returning x when x is NaN (x86's max/min semantics).
#if defined(__AVX512F__)
inline Vec splat(float x) { return Vec(_mm512_set1_ps(x)); }
inline Vec maxNaN(Vec a, Vec x) { return Vec(_mm512_max_ps(__m512(a), __m512(x))); }
inline Vec minNaN(Vec a, Vec x) { return Vec(_mm512_min_ps(__m512(a), __m512(x))); }
#elif defined(__AVX2__)
inline Vec splat(float x) { return Vec(_mm256_set1_ps(x)); }
inline Vec maxNaN(Vec a, Vec x) { return Vec(_mm256_max_ps(__m256(a), __m256(x))); }
inline Vec minNaN(Vec a, Vec x) { return Vec(_mm256_min_ps(__m256(a), __m256(x))); }
#elif defined(__SSE2__)
inline Vec splat(float x) { return Vec(_mm_set1_ps(x)); }
inline Vec maxNaN(Vec a, Vec x) { return Vec(_mm_max_ps(__m128(a), __m128(x))); }
inline Vec minNaN(Vec a, Vec x) { return Vec(_mm_min_ps(__m128(a), __m128(x))); }
#else
inline Vec splat(float x) {
  Vec v;
  for (int i = 0; i < kLanes; ++i) v[i] = x;
  return v;
}
inline Vec maxNaN(Vec a, Vec x) { return a > x ? a : x; }
inline Vec minNaN(Vec a, Vec x) { return a < x ? a : x; }
#endif
inline Vec loadu(const float *p) { return *reinterpret_cast<const UnalignedVec *>(p); }
inline void storeu(float *p, Vec v) { *reinterpret_cast<UnalignedVec *>(p) = v; }

inline float horizontalSum(Vec v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// The lanes' sum as a pairwise tree: lane i + lane i + kLanes/2, and so on down to one. Fewer
// dependent additions than horizontalSum, in another (fixed) order; for new kernels only, since
// changing the order of horizontalSum would change the selective scan's results.
inline float treeSum(Vec v) {
#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
  // The same additions as the loop below, in registers (GCC compiles the loop through memory).
#if defined(__AVX512F__)
  const __m512 v512 = __m512(v);
  const __m256 v256 =
      _mm256_add_ps(_mm512_castps512_ps256(v512), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v512), 1)));
#elif defined(__AVX2__)
  const __m256 v256 = __m256(v);
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
  const __m128 v128 = _mm_add_ps(_mm256_castps256_ps128(v256), _mm256_extractf128_ps(v256, 1));
#else
  const __m128 v128 = __m128(v);
#endif
  const __m128 v64 = _mm_add_ps(v128, _mm_movehl_ps(v128, v128));         // lanes i + i+2
  return _mm_cvtss_f32(_mm_add_ss(v64, _mm_shuffle_ps(v64, v64, 0x55)));  // lane 0 + lane 1
#else
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) v[i] += v[i + width];
  return v[0];
#endif
}

// 2^x for every lane, to about 2 ulp (Cephes' exp2f polynomial). x is split as r + f with r an
// integer and |f| <= 1/2; 2^f comes from a degree-6 polynomial and 2^r from the exponent bits.
// x <= -127 gives 0 (results below the normal range flush to zero), x >= 127.5 gives +Inf, NaN
// stays NaN.
inline Vec exp2(Vec x) {
  x = minNaN(splat(128.0f), maxNaN(splat(-127.0f), x));  // NaN passes through
  // Adding 1.5 * 2^23 rounds x to an integer r, which then sits in the low mantissa bits of the
  // sum: its bit pattern minus the constant's is r as a 32-bit integer.
  const Vec roundingMagic = splat(12582912.0f);
  const Vec shifted = x + roundingMagic;
  const Vec r = shifted - roundingMagic;
  const Vec f = x - r;
  Vec p = splat(1.535336188319500e-4f);
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const IVec exponentBits = (reinterpret_cast<const IVec &>(shifted) + (127 - 0x4b400000)) << 23;
  return p * reinterpret_cast<const Vec &>(exponentBits);
}

inline Vec select(IVec mask, Vec a, Vec b) { return mask ? a : b; }

// e^x for every lane, to about 1 ulp (Cephes' expf: Cody-Waite reduction by ln 2, then a degree-5
// polynomial). Overflow gives +Inf, x below -87.3 gives 0, NaN stays NaN.
inline Vec exp(Vec x) {
  const Vec clamped = select(x > 88.0f, splat(88.0f), select(x < -87.3f, splat(-87.3f), x));
  const Vec roundingMagic = splat(12582912.0f);
  const Vec n = (clamped * 1.44269504088896341f + roundingMagic) - roundingMagic;
  Vec r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  Vec p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const IVec exponentBits = (__builtin_convertvector(n, IVec) + 127) << 23;
  Vec result = p * reinterpret_cast<const Vec &>(exponentBits);
  result = select(x > 88.7228391f, splat(__builtin_inff()), result);
  result = select(x < -87.3f, splat(0.0f), result);
  return result;
}

// log(x) for x >= 0 (Cephes' logf): x = m 2^e with m in [sqrt(1/2), sqrt(2)), then a degree-8
// polynomial in m - 1. log(0) = -Inf, log(+Inf) = +Inf, NaN stays NaN.
inline Vec log(Vec x) {
  const IVec bits = reinterpret_cast<const IVec &>(x);
  IVec e = ((bits >> 23) & 0xff) - 126;
  const IVec mantissaBits = (bits & 0x007fffff) | 0x3f000000;  // m in [0.5, 1)
  Vec m = reinterpret_cast<const Vec &>(mantissaBits);
  const IVec small = m < 0.707106781186547524f;
  e = e + small;  // small is -1 where true
  m = select(small, m + m - 1.0f, m - 1.0f);
  const Vec ef = __builtin_convertvector(e, Vec);
  const Vec z = m * m;
  Vec y = splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  Vec result = m + y + ef * 0.693359375f;
  result = select(x == 0.0f, splat(-__builtin_inff()), result);
  result = select(x == __builtin_inff(), x, result);
  result = select(x != x, x, result);
  return result;
}

// log(1 + x) for x >= 0, accurate also for tiny x: with u = 1 + x (rounded),
// log1p(x) = log(u) * x / (u - 1), and x itself where u rounds to 1.
inline Vec log1p(Vec x) {
  const Vec u = 1.0f + x;
  const Vec viaLog = log(u) * (x / (u - 1.0f));
  return select(u == 1.0f, x, select(u == __builtin_inff(), u, viaLog));
}

}  // namespace ss::cpu::SS_CPU_ISA::simd

namespace ss {
// The scan's formulas (common/scan_math.h) on SIMD vectors.
template <>
struct MathOps<cpu::SS_CPU_ISA::simd::Vec> {
  using Vec = cpu::SS_CPU_ISA::simd::Vec;
  using IVec = cpu::SS_CPU_ISA::simd::IVec;
  static Vec splat(float x) { return cpu::SS_CPU_ISA::simd::splat(x); }
  static Vec exp(Vec x) { return cpu::SS_CPU_ISA::simd::exp(x); }
  static Vec log1p(Vec x) { return cpu::SS_CPU_ISA::simd::log1p(x); }
  static Vec select(IVec c, Vec a, Vec b) { return c ? a : b; }
};
}  // namespace ss
