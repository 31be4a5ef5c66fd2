// selectiveStateUpdate: one step of the recurrence (decoding). What one call computes (filled by
// state_update_binding.cc from the descriptor lib/ops/state-update.ts builds) and the entry points
// of its backends (state_update_cpu.cc, state_update.cu).
//
// All three forms of the public API are the heads form here:
//   channels form = heads with H = dim, P = 1;
//   one scalar per head: A, dt and dtBias are given per head and broadcast over (P, N) / P.
// Strides are in elements; a stride of 0 broadcasts.
#pragma once
#include <cstdint>

#include "../../common/dtype.h"
#include "../../cpu/isa.h"
#include "../../gpu.h"

namespace ss {

struct StateUpdateParams {
  int64_t batch = 0, heads = 0, headDim = 0, dstate = 0, groups = 1;
  int64_t stateSlots = 0;                 // rows of `state` (== batch without stateBatchIndices)
  DType dtype = DType::Float32;           // of x, dt, z, B, C and y
  float *state = nullptr;                 // (slots, H, P, N), updated in place
  const void *x = nullptr, *z = nullptr;  // (batch, H, P)
  const void *dt = nullptr;               // (batch, H) when scalarPerHead, else (batch, H, P)
  const void *B = nullptr, *C = nullptr;  // (batch, G, N)
  const float *A = nullptr;               // (H, P, N), or (H) when scalarPerHead
  const float *D = nullptr;               // optional: (H, P) or (H), see dStride*
  const float *dtBias = nullptr;          // optional: (H, P), or (H) when scalarPerHead
  bool dtSoftplus = false;
  bool scalarPerHead = false;                  // A is (H), dt is (batch, H), dtBias is (H)
  int64_t dStrideHead = 0, dStrideP = 0;       // D: (H, P) -> (P, 1); (H) -> (1, 0)
  const int32_t *stateBatchIndices = nullptr;  // optional (batch); negative = padding row
  void *y = nullptr;                           // (batch, H, P)
};

namespace cpu {
SS_PER_CPU_ISA(void stateUpdate(const StateUpdateParams &p))
inline void stateUpdate(const StateUpdateParams &p) { SS_CALL_CPU_ISA(stateUpdate, p); }
}  // namespace cpu

namespace cuda {
gpu::Status stateUpdate(const StateUpdateParams &p, gpu::Stream stream);
}  // namespace cuda

}  // namespace ss
