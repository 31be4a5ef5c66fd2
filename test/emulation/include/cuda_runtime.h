// A stand-in for CUDA's cuda_runtime.h, for compiling the CUDA kernels of csrc/ with g++ and running
// them on the emulator (emu.h). This directory comes first on the include path of the kernel
// sources; nothing of the CUDA toolkit is used.
//
// It provides what the kernels and their launch code use, and a little more of the same kind:
//  - the execution-space and launch qualifiers, as nothing (`__shared__` as `static`: blocks run
//    one at a time in one OS thread, so a function-static object is exactly "one per block";
//    `extern __shared__` arrays are rewritten by preprocess.mjs to the block's dynamic buffer);
//  - threadIdx / blockIdx / blockDim / gridDim, read-only views of the running fiber's values;
//  - the warp collectives and __syncthreads, which suspend the calling fiber until its warp or
//    block has arrived (emu::warpCollective, emu::syncThreads);
//  - __ldg (with the alignment check the hardware does), atomics (the emulator's, visible to its
//    detector of races between blocks), bit casts and fast-math intrinsics;
//  - the runtime API calls of the launch code (allocation, memset, copies, attributes, errors).
// The kernels are compiled with __CUDACC__ and __CUDA_ARCH__ defined (build.mjs), so that the
// shared headers take their device paths.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "emu.h"
#include "emu_mma.h"

// ---- Qualifiers -----------------------------------------------------------------------------------
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __constant__
#define __managed__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// ---- Built-in variables ---------------------------------------------------------------------------
#define threadIdx (static_cast<const uint3 &>(::emu::gThreadIdx))
#define blockIdx (static_cast<const uint3 &>(::emu::gBlockIdx))
#define blockDim (static_cast<const dim3 &>(::emu::gBlockDim))
#define gridDim (static_cast<const dim3 &>(::emu::gGridDim))
constexpr int warpSize = emu::kWarpSize;

// ---- Vector types -----------------------------------------------------------------------------------
// With CUDA's sizes and alignments: a misaligned access through one is caught by the emulator
// (__ldg) or by -fsanitize=alignment (plain loads and stores).
struct __attribute__((aligned(8))) float2 {
  float x, y;
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(8))) int2 {
  int x, y;
};
struct __attribute__((aligned(16))) int4 {
  int x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 {
  unsigned x, y;
};
struct __attribute__((aligned(16))) uint4 {
  unsigned x, y, z, w;
};
struct __attribute__((aligned(16))) double2 {
  double x, y;
};

// ---- Synchronisation and warp collectives ---------------------------------------------------------
// The default arguments record the caller's source position: the lanes of a warp must meet at the
// same shuffle (and the threads of a block at the same __syncthreads), or the emulator faults.
inline void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::syncThreads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::warpCollective(emu::Collective::SyncWarp, mask, 0, 0, emu::kWarpSize, file, line);
}
template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = emu::kWarpSize, const char *file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
  return emu::fromBits<T>(
      emu::warpCollective(emu::Collective::ShflIdx, mask, emu::toBits(var), srcLane, width, file, line));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = emu::kWarpSize,
                        const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  return emu::fromBits<T>(
      emu::warpCollective(emu::Collective::ShflUp, mask, emu::toBits(var), int(delta), width, file, line));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = emu::kWarpSize,
                          const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  return emu::fromBits<T>(
      emu::warpCollective(emu::Collective::ShflDown, mask, emu::toBits(var), int(delta), width, file, line));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = emu::kWarpSize,
                         const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  return emu::fromBits<T>(
      emu::warpCollective(emu::Collective::ShflXor, mask, emu::toBits(var), laneMask, width, file, line));
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char *file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return unsigned(emu::warpCollective(emu::Collective::Ballot, mask, 0, predicate != 0, emu::kWarpSize, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::warpCollective(emu::Collective::Any, mask, 0, predicate != 0, emu::kWarpSize, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::warpCollective(emu::Collective::All, mask, 0, predicate != 0, emu::kWarpSize, file, line));
}
// Memory fences order nothing here: a fiber's writes are seen by the others as soon as it yields.
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __trap() { emu::fault("__trap() called"); }

// ---- Memory access ----------------------------------------------------------------------------------
// The read-only cache load. The hardware faults (cudaErrorMisalignedAddress) on an access that is
// not aligned to its size; so does the emulator, which matters for the kernels' 16-byte vector loads.
template <class T>
inline T __ldg(const T *p) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) {
    emu::fault("misaligned __ldg of " + std::to_string(sizeof(T)) + " bytes (alignment " + std::to_string(alignof(T)) +
               ") at address " + std::to_string(reinterpret_cast<uintptr_t>(p)));
    return T{};
  }
  if (sizeof(T) >= 8) ++emu::gVectorLoads;
  return *p;
}

// Atomics: the emulator's, which the race detector tells apart from plain accesses (emu.h).
inline float atomicAdd(float *a, float v) { return emu::atomicAdd(a, v); }
inline double atomicAdd(double *a, double v) { return emu::atomicAdd(a, v); }
inline int atomicAdd(int *a, int v) { return emu::atomicAdd(a, v); }
inline unsigned atomicAdd(unsigned *a, unsigned v) { return emu::atomicAdd(a, v); }
inline unsigned long long atomicAdd(unsigned long long *a, unsigned long long v) { return emu::atomicAdd(a, v); }

// ---- Bit casts and math intrinsics -------------------------------------------------------------------
// The intrinsics map to the host's libm; the device's own rounding (e.g. its 2-ulp exp2f) is not
// reproduced (README.md, limitations).
inline unsigned __float_as_uint(float f) { return emu::fromBits<unsigned>(emu::toBits(f)); }
inline float __uint_as_float(unsigned u) { return emu::fromBits<float>(emu::toBits(u)); }
inline int __float_as_int(float f) { return emu::fromBits<int>(emu::toBits(f)); }
inline float __int_as_float(int i) { return emu::fromBits<float>(emu::toBits(i)); }
inline float __expf(float x) { return expf(x); }
inline float __exp2f(float x) { return exp2f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

// ---- Runtime API ----------------------------------------------------------------------------------
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char *cudaGetErrorName(cudaError_t error);
const char *cudaGetErrorString(cudaError_t error);
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attribute, int value);
template <class T>
cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attribute, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void *>(entry), attribute, value);
}
cudaError_t cudaMalloc(void **devPtr, size_t size);
cudaError_t cudaFree(void *devPtr);
cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t stream);
cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t stream);
template <class T>
cudaError_t cudaMalloc(T **devPtr, size_t size) {
  return cudaMalloc(reinterpret_cast<void **>(devPtr), size);
}
template <class T>
cudaError_t cudaMallocAsync(T **devPtr, size_t size, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void **>(devPtr), size, stream);
}
cudaError_t cudaMemset(void *devPtr, int value, size_t count);
cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
// The emulated device: one H100 / H200, compute capability 9.0, 132 multiprocessors.
inline cudaError_t cudaGetDevice(int *device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidValue;
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
// Everything runs at the launch, so a stream is always idle.
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
