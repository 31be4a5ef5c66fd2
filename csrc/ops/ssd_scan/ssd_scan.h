// The state space dual scan (Mamba-2): what one call computes (sizes, pointers and flags, filled by
// ssd_scan_binding.cc from the descriptor lib/ops/ssd-scan.ts builds) and the entry points of its
// backends (ssd_scan_cpu.cc; ssd_scan.cu and ssd_scan_backward.cu, the recurrent form on the GPU).
//
// A is one scalar per head, so a step costs one exponential per (t, head) and the state of a head
// is a P x N matrix. All tensors are contiguous, row-major; sizes are int64_t.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../../common/dtype.h"
#include "../../cpu/isa.h"
#include "../../gpu.h"

namespace ss {

struct SsdShape {
  int64_t batch = 0, seqlen = 0, heads = 0, headDim = 0, groups = 0, dstate = 0;
};

struct SsdForwardParams {
  SsdShape shape;
  DType dtype = DType::Float32;           // of x, dt, z, B, C and out
  const void *x = nullptr;                // (batch, L, H, P)
  const void *dt = nullptr;               // (batch, L, H)
  const float *A = nullptr;               // (H)
  const void *B = nullptr, *C = nullptr;  // (batch, L, G, N); head h uses group h / (H / G)
  const void *z = nullptr;                // optional (batch, L, H, P)
  const float *D = nullptr;               // optional: (H) when dPerHead, else (H, P)
  bool dPerHead = false;
  const float *dtBias = nullptr;  // optional (H)
  bool dtSoftplus = false;
  float dtLow = 0.0f, dtHigh = 0.0f;  // dt = clamp(softplus?(dt + dtBias), dtLow, dtHigh); dtHigh may be +Inf
  // Optional, with batch == 1: nseq + 1 offsets into L (0 first, L last, never decreasing); sequence
  // i is steps [cuSeqlens[i], cuSeqlens[i + 1]) and starts from its own state.
  const int32_t *cuSeqlens = nullptr;
  int64_t sequences = 0;                // nseq with cuSeqlens, else batch: the rows of the states
  const float *initialState = nullptr;  // optional (sequences, H, P, N)
  void *out = nullptr;                  // (batch, L, H, P)
  float *lastState = nullptr;           // optional (sequences, H, P, N)
  // Optional (batch, H, chunks, N, P), chunks = ceil(L / chunkLength): the state after the last step
  // of every chunk (of the sequence that step belongs to), stored N-major as the CPU backend keeps
  // it. The backward restarts its recomputation from these.
  float *checkpoints = nullptr;
  int64_t chunkLength = 0;  // the backend's ssdChunkLength(shape)
};

struct SsdBackwardParams {
  SsdForwardParams fwd;               // the inputs, checkpoints and chunkLength of the forward
  const void *dout = nullptr;         // (batch, L, H, P)
  const float *dLastState = nullptr;  // optional (sequences, H, P, N)
  bool deterministic = false;         // the CPU backend always is
  // Outputs; each null where the input was not given.
  void *dx = nullptr, *dz = nullptr;  // dtype, (batch, L, H, P)
  void *ddt = nullptr;                // dtype, (batch, L, H)
  void *dB = nullptr, *dC = nullptr;  // dtype, (batch, L, G, N)
  float *dA = nullptr;                // (H)
  float *dD = nullptr;                // like D
  float *ddtBias = nullptr;           // (H)
  float *dInitialState = nullptr;     // (sequences, H, P, N)
};

namespace cpu {
// Steps per checkpoint of the CPU backend. The backward keeps one chunk's states (chunk x P x N
// floats) per thread, so chunks are shorter than the selective scan's.
constexpr int64_t kSsdChunkLength = 64;
inline int64_t ssdChunkLength(const SsdShape &s) { return std::max<int64_t>(1, std::min(kSsdChunkLength, s.seqlen)); }

SS_PER_CPU_ISA(void ssdForward(const SsdForwardParams &p))
SS_PER_CPU_ISA(void ssdBackward(const SsdBackwardParams &p))
inline void ssdForward(const SsdForwardParams &p) { SS_CALL_CPU_ISA(ssdForward, p); }
inline void ssdBackward(const SsdBackwardParams &p) { SS_CALL_CPU_ISA(ssdBackward, p); }
}  // namespace cpu

namespace cuda {
// The checkpoint interval of the CUDA forward for this shape; the backward is given it back in
// chunkLength.
int64_t ssdChunkLength(const SsdShape &s);
gpu::Status ssdForward(const SsdForwardParams &p, gpu::Stream stream);
// Whether ssdForward runs this call in the chunked form on tensor cores (ssd_scan_chunked.cu):
// float16 or bfloat16 inputs on a device with their mma (bf16 from sm_80), N <= 128, L > 0, packed
// sequences or not.
// Its outputs and checkpoints keep the recurrent kernel's contract.
bool ssdChunkedSupports(const SsdForwardParams &p);
// Allocates and frees its own scratch memory stream-ordered (cudaMallocAsync / cudaFreeAsync).
gpu::Status ssdBackward(const SsdBackwardParams &p, gpu::Stream stream);
}  // namespace cuda

}  // namespace ss
