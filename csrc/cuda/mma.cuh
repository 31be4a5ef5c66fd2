// The warp-level matrix multiply-accumulate of the tensor cores, for 16-bit inputs with float32
// accumulation: D = A B + C with A 16 x 16 (row-major), B 16 x 8 (column-major), C and D 16 x 8,
// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32. All 32 lanes of the warp call it
// together (it is a warp collective); each holds its fragments in the PTX ISA's layout
// ("Matrix Fragments for mma.m16n8k16 with floating point type"), with
//   g = lane / 4 (groupID), q = lane % 4 (threadID_in_group):
//  - a[0] = A[g][2q, 2q+1], a[1] = A[g+8][2q, 2q+1], a[2] = A[g][2q+8, 2q+9], a[3] = A[g+8][2q+8, 2q+9]
//  - b[0] = B[2q, 2q+1][g], b[1] = B[2q+8, 2q+9][g]
//  - c[0..1] = C[g][2q, 2q+1], c[2..3] = C[g+8][2q, 2q+1] (and d the same)
// where each 32-bit word holds two elements, the lower-indexed one in its low 16 bits.
//
// Architectures: m16n8k16 with f16 or bf16 needs sm_80; on sm_75 the f16 product is two m16n8k8
// (k 0-7, then k 8-15, the same fragments split in halves); bf16 has no mma on sm_75, and the
// callers never launch a bf16 matrix kernel there (they check the compute capability; the device
// code traps should one run). The emulator (test/emulation) runs a C++ model of the instruction
// that gathers the 32 lanes' fragments with exactly this layout.
#pragma once
#include "kernel_common.cuh"

namespace ss::cuda {

// Two 16-bit patterns in one word: `lo` the lower-indexed element.
__device__ __forceinline__ uint32_t packPair(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

// This lane's A fragment of columns k0 .. k0 + 15 of a row-major tile of 16-bit values (`stride`
// per row) whose row 0 is A's row 0: rows g and g + 8, columns k0 + 2q (+1) and k0 + 2q + 8 (+9).
__device__ __forceinline__ void loadFragmentA(uint32_t a[4], const uint16_t *tile, int stride, int k0, int g, int q) {
  const uint16_t *lo = tile + g * stride + k0 + 2 * q, *hi = lo + 8 * stride;
  a[0] = packPair(lo[0], lo[1]);
  a[1] = packPair(hi[0], hi[1]);
  a[2] = packPair(lo[8], lo[9]);
  a[3] = packPair(hi[8], hi[9]);
}

// This lane's B fragment (B[k][n] for k = k0 .. k0 + 15, n = 0 .. 7) from a tile that holds B
// transposed, B^T[n][k], row-major with `stride` per row (B column-major): row g, columns
// k0 + 2q (+1) and k0 + 2q + 8 (+9).
__device__ __forceinline__ void loadFragmentB(uint32_t b[2], const uint16_t *tileT, int stride, int k0, int g, int q) {
  const uint16_t *row = tileT + g * stride + k0 + 2 * q;
  b[0] = packPair(row[0], row[1]);
  b[1] = packPair(row[8], row[9]);
}

template <DType DT>
__device__ __forceinline__ void mmaM16N8K16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  static_assert(DT == DType::Float16 || DT == DType::BFloat16, "tensor-core products of 16-bit inputs only");
#if defined(__NVCC__)
#if defined(__CUDA_ARCH__)  // (nvcc's host pass compiles no body)
  if constexpr (DT == DType::Float16) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#elif __CUDA_ARCH__ >= 750
    float t[4];
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};"
                 : "=f"(t[0]), "=f"(t[1]), "=f"(t[2]), "=f"(t[3])
                 : "r"(a[0]), "r"(a[1]), "r"(b[0]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[2]), "r"(a[3]), "r"(b[1]), "f"(t[0]), "f"(t[1]), "f"(t[2]), "f"(t[3]));
#else
    __trap();
#endif
  } else {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
    __trap();
#endif
  }
#endif
#else
  emu::mmaM16N8K16(DT == DType::BFloat16, d, a, b, c);
#endif
}

// Whether the device runs the 16-bit matrix kernels of dtype DT: f16 from sm_75 (compute
// capability 7.5), bf16 from sm_80.
inline bool deviceHasMma(DType dtype) {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
    return false;
  const int cc = major * 10 + minor;
  if (dtype == DType::Float16) return cc >= 75;
  if (dtype == DType::BFloat16) return cc >= 80;
  return false;
}

}  // namespace ss::cuda
