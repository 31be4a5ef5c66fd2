// What the CUDA kernels of causalConv1d share: how they get the width W (1..8, as the API allows).
//
// Every kernel is a template on W. The widths users run fast, 2, 3 and 4 (Mamba's 4; the widths
// causal-conv1d supports), are compile-time instances: the window lives in registers and its loops
// unroll to exactly W terms. The other widths (1, 5..8) share one more instance, W = kRuntimeWidth,
// which reads the width from the params. Its width-indexed arrays are sized to kConvMaxWidth and its
// loops over them unroll over that maximum with each term guarded by `k < width`, so every index
// into them is still a compile-time constant and they stay in registers (an index known only at
// run time would move the array to local memory). In a compile-time instance the same guard is
// `k < W` over a loop of W terms: it folds away and the code is what loops to W would give.
//
// Why not every width at compile time: each instance is compiled once per architecture of the
// release build (eight compiler runs, CMakeLists.txt), which must stay under 5 minutes on 2 cores;
// one instance per width made causal_conv1d.cu 96 instances and 34 CPU-seconds per architecture
// (now 48 and 18; docs/ARCHITECTURE.md).
#pragma once
#include "../../cuda/kernel_common.cuh"
#include "causal_conv1d.h"

namespace ss::cuda {

constexpr int kConvMaxWidth = 8;
// The W of the one instance that serves every width the compile-time instances do not.
constexpr int kRuntimeWidth = 0;

// The size of a width-indexed array, and the trip count of the unrolled loops over one: W, or the
// maximum in the runtime instance.
template <int W>
constexpr int kWidthBound = W == kRuntimeWidth ? kConvMaxWidth : W;

// The width of a call: W itself in a compile-time instance (a constant, so that the guards fold),
// the params' width in the runtime one.
template <int W>
__device__ __forceinline__ int convWidth(int64_t paramsWidth) {
  return W == kRuntimeWidth ? int(paramsWidth) : W;
}

template <int W>
struct WidthTag {
  static constexpr int value = W;
};

// Calls f(WidthTag<W>{}) with W = width for 2, 3 and 4, W = kRuntimeWidth for the other widths
// 1..kConvMaxWidth; any other width is cudaErrorInvalidValue.
template <class F>
cudaError_t dispatchWidth(int64_t width, F &&f) {
  switch (width) {
    case 2: return f(WidthTag<2>{});
    case 3: return f(WidthTag<3>{});
    case 4: return f(WidthTag<4>{});
  }
  if (width >= 1 && width <= kConvMaxWidth) return f(WidthTag<kRuntimeWidth>{});
  return cudaErrorInvalidValue;
}

}  // namespace ss::cuda
