// A stand-in for CUDA's cuda_bf16.h (emulator): the type and the conversions the kernels use.
// __bfloat162float is the hardware's cvt.f32.bf16: the 16 bits become the top half of a float32,
// exactly (NaN payloads included).
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  unsigned short x;
};
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) { return __nv_bfloat16{bits}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t bits = uint32_t(b.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
