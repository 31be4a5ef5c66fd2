// The selective scan (Mamba-1): what one call computes (sizes, pointers and flags, filled by
// scan_binding.cc from the descriptor lib/ops/selective-scan.ts builds) and the entry points of
// its two backends (scan_cpu.cc, scan_forward.cu, scan_backward.cu).
//
// All tensors are contiguous, row-major. Sizes are int64_t everywhere so that no offset overflows
// 32 bits. Pointers are host pointers for the CPU backend, device pointers for CUDA.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../../common/dtype.h"
#include "../../cpu/isa.h"
#include "../../gpu.h"

namespace ss {

// How B (or C) is given.
//   fixed:   (dim, N) float32, the same at every step and batch row;
//   varying: input-dependent, (batch, groups, N, L) in the input dtype; channel d uses group
//            d / (dim / groups). The (batch, N, L) form is groups = 1.
// Made only by the two named constructors. The kind is kept as groups == 0 for fixed: one field,
// because the CUDA kernels read it in their row loop, and a separate kind field there costs the
// forward 8 registers (ptxas, sm_90).
struct Projection {
  const void *data = nullptr;
  int64_t groups = 0;  // 0: fixed; else the groups of a varying projection

  static Projection fixed(const float *data) { return {data, 0}; }
  static Projection varyingGroups(const void *data, int64_t groups) { return {data, groups}; }
  SS_HD bool varying() const { return groups > 0; }
};

struct ScanShape {
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0;
};

struct ScanForwardParams {
  ScanShape shape;
  DType dtype = DType::Float32;  // of u, delta, z, out and of varying B/C
  const void *u = nullptr, *delta = nullptr;
  const void *z = nullptr;   // optional gate
  const float *A = nullptr;  // (dim, N)
  Projection B, C;
  const float *D = nullptr;          // optional (dim)
  const float *deltaBias = nullptr;  // optional (dim)
  // Optional, with batch == 1: nseq + 1 offsets into L (0 first, L last, never decreasing); sequence
  // i is steps [cuSeqlens[i], cuSeqlens[i + 1]) and starts from its own state.
  const int32_t *cuSeqlens = nullptr;
  int64_t sequences = 0;                // nseq with cuSeqlens, else batch: the rows of the states
  const float *initialState = nullptr;  // optional (sequences, dim, N)
  bool deltaSoftplus = false;
  void *out = nullptr;         // (batch, dim, L)
  float *lastState = nullptr;  // optional (sequences, dim, N)
  // Optional (batch, dim, chunks, N): h at the last step of every chunk of chunkLength steps (the
  // state of the sequence that step belongs to), chunks = ceil(L / chunkLength). The backward
  // restarts its recomputation from these.
  float *checkpoints = nullptr;
  int64_t chunkLength = 0;  // the backend's scanChunkLength(shape)
};

struct ScanBackwardParams {
  ScanForwardParams fwd;              // the inputs, checkpoints and chunkLength of the forward
  const void *dout = nullptr;         // (batch, dim, L)
  const float *dLastState = nullptr;  // optional (sequences, dim, N)
  bool deterministic = false;
  // Outputs; each null where the input was not given.
  void *du = nullptr, *ddelta = nullptr, *dz = nullptr;  // dtype, (batch, dim, L)
  float *dA = nullptr;                                   // (dim, N)
  void *dB = nullptr, *dC = nullptr;                     // fixed: float32 (dim, N); varying: dtype, like B/C
  float *dD = nullptr, *ddeltaBias = nullptr;            // (dim)
  float *dInitialState = nullptr;                        // (sequences, dim, N)
};

namespace cpu {
// Steps per checkpoint of the CPU backend. Longer chunks mean fewer checkpoints (batch*dim*N floats
// per chunk) but a larger per-thread buffer in the backward (chunk*N*lanes floats of states).
constexpr int64_t kScanChunkLength = 256;
inline int64_t scanChunkLength(const ScanShape &s) { return std::min(kScanChunkLength, s.seqlen); }

SS_PER_CPU_ISA(void scanForward(const ScanForwardParams &p))
SS_PER_CPU_ISA(void scanBackward(const ScanBackwardParams &p))
inline void scanForward(const ScanForwardParams &p) { SS_CALL_CPU_ISA(scanForward, p); }
inline void scanBackward(const ScanBackwardParams &p) { SS_CALL_CPU_ISA(scanBackward, p); }
}  // namespace cpu

namespace cuda {
// The checkpoint interval of the CUDA forward for this shape; the backward must be given the same
// value back in ScanForwardParams::chunkLength.
int64_t scanChunkLength(const ScanShape &s);
gpu::Status scanForward(const ScanForwardParams &p, gpu::Stream stream);
// Allocates and frees its own scratch memory stream-ordered (cudaMallocAsync / cudaFreeAsync).
gpu::Status scanBackward(const ScanBackwardParams &p, gpu::Stream stream);
}  // namespace cuda

}  // namespace ss
