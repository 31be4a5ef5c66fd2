// Device helpers shared by the CUDA kernels of the ops.
//
//  - Loads and stores of the ITEMS consecutive elements a lane owns, widened to / rounded from
//    float32 with dtype.h, as one 16-byte (or narrower) vector access per 16 bytes when the caller
//    says the span is in range and aligned, element by element with a bounds check otherwise.
//  - Warp sums with a fixed order (deterministic).
//  - 64-bit sizes, grid sizing without the 65,535 y/z limits, and the launch checks.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/dtype.h"

namespace ss::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// grid.x limit; kernels that could need more blocks loop over their work with a grid stride.
constexpr int64_t kMaxGridBlocks = 0x7fffffff;
// Dynamic shared memory a kernel may use without cudaFuncSetAttribute.
constexpr size_t kDefaultSharedMemoryLimit = 48 * 1024;

// Returns the error of a CUDA runtime call from the enclosing function when it failed.
#define SS_CUDA_TRY(expr)                         \
  do {                                            \
    const cudaError_t ssError_ = (expr);          \
    if (ssError_ != cudaSuccess) return ssError_; \
  } while (0)

__host__ __device__ __forceinline__ int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for `work` items, one per block, with a grid-stride loop covering any excess.
inline unsigned gridBlocks(int64_t work) {
  if (work < 1) work = 1;
  return unsigned(work < kMaxGridBlocks ? work : kMaxGridBlocks);
}

// Raises a kernel's dynamic shared memory limit when `bytes` exceeds the default 48 KB. The
// runtime rejects a value above the device's opt-in limit (cudaErrorInvalidValue).
inline cudaError_t allowSharedMemory(const void *kernel, size_t bytes) {
  if (bytes <= kDefaultSharedMemoryLimit) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// Whether a device pointer is aligned to `bytes` (a power of two); null counts as aligned.
inline bool isAligned(const void *p, int bytes) { return (reinterpret_cast<uintptr_t>(p) & uintptr_t(bytes - 1)) == 0; }

__device__ __forceinline__ int laneIndex() { return int(threadIdx.x) & (kWarpSize - 1); }
__device__ __forceinline__ int warpIndex() { return int(threadIdx.x) / kWarpSize; }

// Sum over the warp by a butterfly: every lane gets the same bits (float addition commutes, so
// the two lanes of each exchange compute the same sum), and the order is fixed: deterministic.
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// ---- Math ---------------------------------------------------------------------------------------

// exp2 as the special-function unit computes it: ex2.approx.ftz.f32, one instruction (relative
// error below 2^-22 over the whole range, PTX ISA), subnormal inputs and results flushed to zero.
// Plain exp2f (no fast math) wraps the same instruction in a scaling that keeps subnormal results
// (5 more instructions per call); the scans' decays a_t = exp2(dt A2) lose nothing that matters by
// the flush: a factor below 2^-126 is replaced by 0 (docs/ARCHITECTURE.md, Numerics).
// The emulator compiles this with g++ (no PTX): it runs the model below, the host's exp2f with the
// hardware's two flushes.
__device__ __forceinline__ float exp2Ftz(float x) {
#if defined(__NVCC__) && defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  constexpr float kMinNormal = 1.17549435e-38f;  // 2^-126
  if (x > -kMinNormal && x < kMinNormal) x = 0.0f;
  const float y = exp2f(x);
  return y < kMinNormal ? 0.0f : y;  // y >= 0; NaN passes (the comparison is false)
#endif
}

// ---- Loads and stores of a lane's items -------------------------------------------------------

template <int kBytes>
struct VectorOfBytes;
template <>
struct VectorOfBytes<2> {
  using Type = unsigned short;
};
template <>
struct VectorOfBytes<4> {
  using Type = unsigned int;
};
template <>
struct VectorOfBytes<8> {
  using Type = uint2;
};
template <>
struct VectorOfBytes<16> {
  using Type = uint4;
};

// ITEMS consecutive elements of dtype DT: as whole vectors of up to 16 bytes, or one by one.
template <DType DT, int ITEMS>
struct ItemIO {
  using Storage = typename Element<DT>::Storage;
  static constexpr int kBytes = ITEMS * int(sizeof(Storage));
  static constexpr int kVectorBytes = kBytes < 16 ? kBytes : 16;  // the alignment the vector path needs
  static constexpr int kVectors = kBytes / kVectorBytes;
  using Vector = typename VectorOfBytes<kVectorBytes>::Type;
  union Pack {
    Vector vectors[kVectors];
    Storage items[ITEMS];
  };

  // The whole span as raw vectors (the vectorized promise of load holds), to be widened later by
  // item(): a caller that needs the values only after other work holds half the registers (16-bit
  // types) meanwhile. Read-only data: through the non-coherent cache.
  static __device__ __forceinline__ Pack loadPack(const Storage *p) {
    Pack pack;
#pragma unroll
    for (int v = 0; v < kVectors; ++v) pack.vectors[v] = __ldg(reinterpret_cast<const Vector *>(p) + v);
    return pack;
  }
  // Item i of a pack, widened to float32. bfloat16 pairs are taken straight from their 32-bit
  // word, low half shifted up and high half masked into a float register: exactly what
  // cvt.f32.bf16 computes, one instruction per item where the conversion needs an unpacking move
  // first and C++'s bit cast another move (PTX; in the machine code all of these are one or none).
  static __device__ __forceinline__ float item(const Pack &pack, int i) {
    if constexpr (DT == DType::BFloat16 && kBytes % 4 == 0) {
      const uint32_t word = reinterpret_cast<const uint32_t *>(pack.vectors)[i / 2];
#if defined(__NVCC__) && defined(__CUDA_ARCH__)
      float v;
      if (i % 2 == 0)
        asm("shl.b32 %0, %1, 16;" : "=f"(v) : "r"(word));
      else
        asm("and.b32 %0, %1, 0xffff0000;" : "=f"(v) : "r"(word));
      return v;
#else
      return __uint_as_float(i % 2 == 0 ? word << 16 : word & 0xffff0000u);
#endif
    } else {
      return Element<DT>::load(pack.items[i]);
    }
  }

  // out[i] = base[offset + i] for i < count, 0 beyond. `vectorized` (warp-uniform) promises
  // count == ITEMS and base + offset aligned to kVectorBytes. Read-only data: through the
  // non-coherent cache.
  static __device__ __forceinline__ void load(const void *base, int64_t offset, int count, bool vectorized,
                                              float (&out)[ITEMS]) {
    const Storage *p = static_cast<const Storage *>(base) + offset;
    if (vectorized) {
      const Pack pack = loadPack(p);
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) out[i] = item(pack, i);
    } else {
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) out[i] = i < count ? Element<DT>::load(__ldg(p + i)) : 0.0f;
    }
  }

  // base[offset + i] = in[i] rounded to DT, for i < count; `vectorized` as for load.
  static __device__ __forceinline__ void store(void *base, int64_t offset, int count, bool vectorized,
                                               const float (&in)[ITEMS]) {
    Storage *p = static_cast<Storage *>(base) + offset;
    if (vectorized) {
      Pack pack;
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) pack.items[i] = Element<DT>::store(in[i]);
#pragma unroll
      for (int v = 0; v < kVectors; ++v) reinterpret_cast<Vector *>(p)[v] = pack.vectors[v];
    } else {
#pragma unroll
      for (int i = 0; i < ITEMS; ++i)
        if (i < count) p[i] = Element<DT>::store(in[i]);
    }
  }

  // Whether rows of `rowLength` elements starting at `base` keep every lane's span aligned: the
  // host's half of the vectorized promise (the kernel adds "the chunk is full").
  static bool alignedRows(const void *base, int64_t rowLength) {
    return isAligned(base, kVectorBytes) && (rowLength * int64_t(sizeof(Storage))) % kVectorBytes == 0;
  }
};

// ---- Launch plumbing ----------------------------------------------------------------------------

// The chunk shapes the scan kernels are compiled for: ITEMS steps per lane, 32 * ITEMS per chunk.
// kMaxItems bounds the shapes instantiated (the forward goes to 16, the backward stops at 4); the
// shortest is 2 steps per lane (a sequence of up to 32 steps runs in a 64-step chunk: one more
// kernel per dtype and direction costs the release build more than the idle lanes cost there).
constexpr int kMinItems = 2;
template <int ITEMS>
struct ItemsTag {
  static constexpr int value = ITEMS;
};
template <int kMaxItems, class F>
cudaError_t dispatchItems(int items, F &&f) {
  static_assert(kMaxItems == 2 || kMaxItems == 4 || kMaxItems == 8 || kMaxItems == 16, "ITEMS is a power of two <= 16");
  switch (items) {
    case 2: return f(ItemsTag<2>{});
    case 4:
      if constexpr (kMaxItems >= 4) return f(ItemsTag<4>{});
      break;
    case 8:
      if constexpr (kMaxItems >= 8) return f(ItemsTag<8>{});
      break;
    case 16:
      if constexpr (kMaxItems >= 16) return f(ItemsTag<16>{});
      break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace ss::cuda
