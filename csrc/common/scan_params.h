// What one call of an op computes: sizes, pointers and flags, filled by the addon after the
// TypeScript layer has checked every argument, and read by both backends.
//
// All tensors are contiguous, row-major. Sizes are int64_t everywhere so that no offset overflows
// 32 bits. Pointers are host pointers for the CPU backend, device pointers for CUDA.
#pragma once
#include <cstdint>

#include "dtype.h"

namespace ss {

// How B (or C) is given.
//   fixed:  (dim, N) float32, the same at every step and batch;
//   varying (input-dependent): (batch, groups, N, L) in the input dtype; channel d uses group
//   d / (dim / groups). The (batch, N, L) form is groups = 1.
struct Projection {
  const void *data = nullptr;
  int64_t groups = 0;  // 0 = fixed
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
  const float *D = nullptr;             // optional (dim)
  const float *deltaBias = nullptr;     // optional (dim)
  const float *initialState = nullptr;  // optional (batch, dim, N)
  bool deltaSoftplus = false;
  void *out = nullptr;         // (batch, dim, L)
  float *lastState = nullptr;  // optional (batch, dim, N)
  // Optional (batch, dim, chunks, N): h at the last step of every chunk of chunkLength steps,
  // chunks = ceil(L / chunkLength). The backward restarts its recomputation from these.
  float *checkpoints = nullptr;
  int64_t chunkLength = 0;
};

struct ScanBackwardParams {
  ScanForwardParams fwd;              // the inputs, checkpoints and chunkLength of the forward
  const void *dout = nullptr;         // (batch, dim, L)
  const float *dLastState = nullptr;  // optional (batch, dim, N)
  bool deterministic = false;
  // Outputs; each null where the input was not given.
  void *du = nullptr, *ddelta = nullptr, *dz = nullptr;  // dtype, (batch, dim, L)
  float *dA = nullptr;                                   // (dim, N)
  void *dB = nullptr, *dC = nullptr;                     // fixed: float32 (dim, N); varying: dtype, like B/C
  float *dD = nullptr, *ddeltaBias = nullptr;            // (dim)
  float *dInitialState = nullptr;                        // (batch, dim, N)
};

// One step of the recurrence (decoding). All three forms of API.md are the heads form:
//   channels form = heads with H = dim, P = 1;
//   one scalar per head: A, dt and dtBias are given per head and broadcast over (P, N) / P.
// Strides are in elements; a stride of 0 broadcasts.
struct StateUpdateParams {
  int64_t batch = 0, heads = 0, headDim = 0, dstate = 0, groups = 1;
  int64_t stateSlots = 0;                                // rows of `state` (== batch without stateBatchIndices)
  DType dtype = DType::Float32;                          // of x, dt, z, B, C and y
  float *state = nullptr;                                // (slots, H, P, N), updated in place
  const void *x = nullptr, *dt = nullptr, *z = nullptr;  // x, z: (batch, H, P); dt: see dtStride*
  const void *B = nullptr, *C = nullptr;                 // (batch, G, N)
  const float *A = nullptr;                              // (H, P, N) or (H)
  const float *D = nullptr;                              // (H, P) or (H), optional
  const float *dtBias = nullptr;                         // (H, P) or (H), optional
  bool dtSoftplus = false;
  bool scalarPerHead = false;                  // A is (H), dt is (batch, H), dtBias is (H)
  int64_t dStrideHead = 0, dStrideP = 0;       // D: (H, P) -> (P, 1); (H) -> (1, 0)
  const int32_t *stateBatchIndices = nullptr;  // optional (batch); negative = padding row
  void *y = nullptr;                           // (batch, H, P)
};

}  // namespace ss
