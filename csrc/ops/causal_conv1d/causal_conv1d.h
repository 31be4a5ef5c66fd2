// causalConv1d: the causal depthwise convolution in front of a Mamba block's scan. What one call
// computes (filled by causal_conv1d_binding.cc from the descriptor lib/ops/causal-conv1d.ts builds)
// and the entry points of its backends (causal_conv1d_cpu.cc; causal_conv1d_update.cu).
//
//   p = bias[d] + sum_{k<W} weight[d,k] * window[k];  out = silu(p) or p
// where the window is the W - 1 previous inputs (the state) followed by the current input.
#pragma once
#include <cstdint>

#include "../../common/dtype.h"
#include "../../cpu/isa.h"
#include "../../gpu.h"

namespace ss {

// One decoding step: out from convState and x, then convState drops its oldest column and
// appends x.
struct ConvUpdateParams {
  int64_t batch = 0, dim = 0, width = 0;       // width = W, 1..8
  int64_t stateSlots = 0;                      // rows of convState (== batch without indices)
  DType dtype = DType::Float32;                // of convState, x and out
  void *convState = nullptr;                   // (slots, dim, W - 1), shifted in place
  const void *x = nullptr;                     // (batch, dim)
  const float *weight = nullptr;               // (dim, W)
  const float *bias = nullptr;                 // optional: (dim)
  bool silu = false;                           // activation 'silu'
  const int32_t *stateBatchIndices = nullptr;  // optional (batch); negative = padding row
  void *out = nullptr;                         // (batch, dim)
};

namespace cpu {
SS_PER_CPU_ISA(void convUpdate(const ConvUpdateParams &p))
inline void convUpdate(const ConvUpdateParams &p) { SS_CALL_CPU_ISA(convUpdate, p); }
}  // namespace cpu

namespace cuda {
gpu::Status convUpdate(const ConvUpdateParams &p, gpu::Stream stream);
}  // namespace cuda

}  // namespace ss
