// causalConv1d: the causal depthwise convolution in front of a Mamba block's scan. What one call
// computes (filled by causal_conv1d_binding.cc from the descriptors lib/ops/causal-conv1d.ts builds)
// and the entry points of its backends (causal_conv1d_cpu.cc; causal_conv1d_*.cu).
//
//   p = bias[d] + sum_{k<W} weight[d,k] * window[k];  out = silu(p) or p
// where the window is the W - 1 previous inputs (the state) followed by the current input. Over a
// whole sequence, with xs = initialState ‖ x along time (zeros without initialState):
//   p_t = bias[d] + sum_k weight[d,k] * xs[t + k],   finalState[j] = xs[L + j], j < W - 1.
// All tensors are contiguous, row-major; sizes are int64_t, offsets into x are 64-bit.
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

// The forward over whole sequences.
struct ConvForwardParams {
  int64_t batch = 0, dim = 0, seqlen = 0;  // seqlen = L, may be below W - 1 (or 0 with cuSeqlens)
  int64_t width = 0;                       // W, 1..8
  DType dtype = DType::Float32;            // of x, out, initialState and finalState
  const void *x = nullptr;                 // (batch, dim, L)
  const float *weight = nullptr;           // (dim, W)
  const float *bias = nullptr;             // optional: (dim)
  bool silu = false;                       // activation 'silu'
  // Optional, with batch == 1: nseq + 1 offsets into L (0 first, L last, never decreasing); sequence
  // i is steps [cuSeqlens[i], cuSeqlens[i + 1]): its window restarts there from initialState row i
  // (or zeros) and nothing crosses a boundary. An empty sequence's finalState is its initialState.
  const int32_t *cuSeqlens = nullptr;
  int64_t sequences = 0;               // nseq with cuSeqlens, else batch: the rows of the states
  const void *initialState = nullptr;  // optional (sequences, dim, W - 1): the W - 1 inputs before t = 0
  void *out = nullptr;                 // (batch, dim, L); unused (may be null) in ConvBackwardParams::fwd
  void *finalState = nullptr;          // optional (sequences, dim, W - 1): the last W - 1 inputs
};

// The backward. The conv needs no checkpoints: the pre-activation is recomputed from x.
struct ConvBackwardParams {
  ConvForwardParams fwd;              // the forward's inputs (out and finalState are not read)
  const void *dout = nullptr;         // dtype, (batch, dim, L)
  const void *dFinalState = nullptr;  // optional, dtype, (sequences, dim, W - 1): gradient into finalState
  bool deterministic = false;         // the CPU backend always is (bit-identical on every run)
  // Outputs.
  void *dx = nullptr;             // dtype, (batch, dim, L)
  float *dweight = nullptr;       // (dim, W), summed over batch and time in float32
  float *dbias = nullptr;         // optional, when bias was given: (dim)
  void *dInitialState = nullptr;  // optional, dtype, (sequences, dim, W - 1), when initialState was given
};

namespace cpu {
SS_PER_CPU_ISA(void convUpdate(const ConvUpdateParams &p))
SS_PER_CPU_ISA(void convForward(const ConvForwardParams &p))
SS_PER_CPU_ISA(void convBackward(const ConvBackwardParams &p))
inline void convUpdate(const ConvUpdateParams &p) { SS_CALL_CPU_ISA(convUpdate, p); }
inline void convForward(const ConvForwardParams &p) { SS_CALL_CPU_ISA(convForward, p); }
inline void convBackward(const ConvBackwardParams &p) { SS_CALL_CPU_ISA(convBackward, p); }
}  // namespace cpu

namespace cuda {
gpu::Status convUpdate(const ConvUpdateParams &p, gpu::Stream stream);
gpu::Status convForward(const ConvForwardParams &p, gpu::Stream stream);
// Allocates and frees any scratch stream-ordered (cudaMallocAsync / cudaFreeAsync).
gpu::Status convBackward(const ConvBackwardParams &p, gpu::Stream stream);
}  // namespace cuda

}  // namespace ss
