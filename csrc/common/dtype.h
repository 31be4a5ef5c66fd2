// Element types and their conversions, shared by the CPU backend and the CUDA kernels.
//
// float16 and bfloat16 are stored as raw 16-bit patterns. Every narrowing rounds to nearest, ties
// to even; NaN stays NaN (quiet, payload kept where it fits), infinities stay infinite, subnormals
// are exact. Values arriving from JavaScript are doubles: they are narrowed in two steps, first to
// float32 with round-to-odd, then to the 16-bit type with round-to-nearest-even. Round-to-odd keeps
// the two steps equal to one correctly rounded step (float32 has more than two bits to spare over
// either 16-bit type), which a plain double -> float -> half chain would not.
#pragma once
#include <cstdint>
#include <cstring>

#include "hd.h"
#if defined(__CUDA_ARCH__)
// The hardware conversions of the widening loads below (the emulator has stand-ins of both headers).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace ss {

// The codes are lib/dtype.ts's: the TypeScript layer passes them in every descriptor.
enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2 };

SS_HD uint32_t floatToBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

SS_HD float bitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

SS_HD float halfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bitsToFloat(sign | 0x7f800000u | (mantissa << 13));  // Inf, NaN
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
    const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return bitsToFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

SS_HD uint16_t floatToHalf(float f) {
  const uint32_t x = floatToBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // Inf stays Inf; NaN becomes a quiet NaN with the top payload
    return uint16_t(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u | ((magnitude >> 13) & 0x3ffu) : 0u));
  }
  if (magnitude >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to Inf
  if (magnitude < 0x38800000u) {                                  // below 2^-14: a half subnormal, m * 2^-24
    const uint32_t biasedExponent = magnitude >> 23;
    if (biasedExponent < 102) return uint16_t(sign);  // below 2^-25: rounds to zero
    const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - biasedExponent;  // 14 .. 24
    uint32_t m = significand >> shift;
    const uint32_t rest = significand & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (m & 1u))) ++m;  // may carry into the smallest normal
    return uint16_t(sign | m);
  }
  const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
  return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

SS_HD float bfloat16ToFloat(uint16_t b) { return bitsToFloat(uint32_t(b) << 16); }

SS_HD uint16_t floatToBfloat16(float f) {
  const uint32_t x = floatToBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// Loads and stores of one element of a given type, widening to / rounding from float32.
template <DType T>
struct Element;
template <>
struct Element<DType::Float32> {
  using Storage = float;
  static SS_HD float load(float v) { return v; }
  static SS_HD float store(float v) { return v; }
};
// Device code widens with the hardware's conversions: one exact instruction each (cvt.f32.f16,
// cvt.f32.bf16 on sm_90), where halfToFloat's branches cost the f16 state loops about twice the
// instructions of bf16's. Narrowing stays in software (once per output, and it keeps NaN payloads).
template <>
struct Element<DType::Float16> {
  using Storage = uint16_t;
  static SS_HD float load(uint16_t v) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(v));
#else
    return halfToFloat(v);
#endif
  }
  static SS_HD uint16_t store(float v) { return floatToHalf(v); }
};
template <>
struct Element<DType::BFloat16> {
  using Storage = uint16_t;
  static SS_HD float load(uint16_t v) {
#if defined(__CUDA_ARCH__)
    return __bfloat162float(__ushort_as_bfloat16(v));
#else
    return bfloat16ToFloat(v);
#endif
  }
  static SS_HD uint16_t store(float v) { return floatToBfloat16(v); }
};

// Element i of an array of dtype T, widened to float32; and the store that rounds to T.
template <DType T>
SS_HD float loadElement(const void *base, int64_t i) {
  return Element<T>::load(static_cast<const typename Element<T>::Storage *>(base)[i]);
}
template <DType T>
SS_HD void storeElement(void *base, int64_t i, float v) {
  static_cast<typename Element<T>::Storage *>(base)[i] = Element<T>::store(v);
}

// A dtype as a compile-time value: the type that dispatchDType hands its callback.
template <DType T>
struct DTypeTag {
  static constexpr DType value = T;
  using E = Element<T>;  // load / store / Storage of the element type
};

// The one switch over dtypes (host code: kernel launchers, the CPU backend, the addon): calls f(DTypeTag<T>{}) with the
// dtype t as a compile-time value, so that kernels are instantiated per element type and every caller agrees on the
// list. Every branch must return the same type. A DType only ever holds one of the three values (the addon checks the
// codes it is given), so there is no fallthrough.
template <class F>
decltype(auto) dispatchDType(DType t, F &&f) {
  switch (t) {
    case DType::Float16: return f(DTypeTag<DType::Float16>{});
    case DType::BFloat16: return f(DTypeTag<DType::BFloat16>{});
    case DType::Float32: break;
  }
  return f(DTypeTag<DType::Float32>{});
}

// Bytes of one element, from the element type.
inline int dtypeSize(DType t) {
  return dispatchDType(t, [](auto tag) { return int(sizeof(typename decltype(tag)::E::Storage)); });
}

#if !defined(__CUDA_ARCH__)
// Host only: double -> float32 rounding to odd (see the comment at the top of this file).
inline float roundToOddFloat(double x) {
  float f = float(x);
  if (double(f) != x && f == f && x == x) {
    uint32_t bits = floatToBits(f);
    const double fabsF = f < 0 ? -double(f) : double(f);
    const double fabsX = x < 0 ? -x : x;
    if (fabsF > fabsX) bits -= 1;  // rounded away from zero: step back toward zero
    f = bitsToFloat(bits | 1u);
  }
  return f;
}
// A double rounded once to the element type T (float32: to nearest; 16-bit: round to odd, then to
// nearest even, which equals one correctly rounded step).
template <DType T>
typename Element<T>::Storage storeDouble(double x) {
  if constexpr (T == DType::Float32)
    return float(x);
  else
    return Element<T>::store(roundToOddFloat(x));
}
#endif

}  // namespace ss
