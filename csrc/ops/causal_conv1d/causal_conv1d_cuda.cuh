// What the CUDA kernels of causalConv1d share: the width W as a compile-time value (the window
// lives in registers, its loops unrolled), 1..8 as the API allows.
#pragma once
#include "../../cuda/kernel_common.cuh"
#include "causal_conv1d.h"

namespace ss::cuda {

constexpr int kConvMaxWidth = 8;

template <int W>
struct WidthTag {
  static constexpr int value = W;
};

// Calls f(WidthTag<W>{}) for width 1..8; any other width is cudaErrorInvalidValue.
template <class F>
cudaError_t dispatchWidth(int64_t width, F &&f) {
  switch (width) {
    case 1: return f(WidthTag<1>{});
    case 2: return f(WidthTag<2>{});
    case 3: return f(WidthTag<3>{});
    case 4: return f(WidthTag<4>{});
    case 5: return f(WidthTag<5>{});
    case 6: return f(WidthTag<6>{});
    case 7: return f(WidthTag<7>{});
    case 8: return f(WidthTag<8>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace ss::cuda
