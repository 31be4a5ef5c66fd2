// A stand-in for CUDA's cuda_fp16.h (emulator): the type and the conversions the kernels use.
// __half2float is the hardware's cvt.f32.f16, exact for every value; modelled by the host
// compiler's own IEEE binary16 (_Float16), independent of csrc/common/dtype.h's software
// conversion, which the CPU backend uses (so that the two are compared, not copied).
#pragma once
#include <cstring>

struct __half {
  unsigned short x;
};
inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline float __half2float(__half h) {
  _Float16 v;
  std::memcpy(&v, &h.x, sizeof v);
  return float(v);
}
