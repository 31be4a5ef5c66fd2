// One decoding step of the causal depthwise convolution (causalConv1dUpdate) on the GPU.
//
// Kernel design (convUpdateKernel<DT, W>; W a compile-time width or the runtime-width instance,
// causal_conv1d_cuda.cuh): one thread per row (batch row b, channel d). The row's
// window (its W - 1 state columns, then x) is loaded into registers once, out is its dot product
// with the row's weights, and the state is written back shifted by one column: every element of
// convState, x and out is read or written exactly once, and consecutive threads touch consecutive
// rows, so a warp's accesses cover one contiguous span of each tensor (the bytes per step are
// (2 (W - 1) + 2) * batch * dim * s + dim * (W + 1) * 4: memory-bound, nothing to reuse). The
// shift copies the stored bits (no conversion round trip), so the state keeps exactly the inputs
// it was given. A grid-stride loop over rows: batch * dim is unbounded.
#include "../../common/scan_math.h"
#include "causal_conv1d_cuda.cuh"

namespace ss::cuda {
namespace {

constexpr int kConvUpdateThreads = 256;

template <DType DT, int W>
__global__ void __launch_bounds__(kConvUpdateThreads) convUpdateKernel(const ConvUpdateParams p) {
  using Storage = typename Element<DT>::Storage;
  constexpr int kMaxW = kWidthBound<W>;
  const int width = convWidth<W>(p.width), H = width - 1;
  const int64_t D = p.dim, rows = p.batch * D;
  const int64_t stride = int64_t(gridDim.x) * kConvUpdateThreads;
  Storage *const state = static_cast<Storage *>(p.convState);
  const Storage *const x = static_cast<const Storage *>(p.x);
  Storage *const out = static_cast<Storage *>(p.out);
  for (int64_t row = int64_t(blockIdx.x) * kConvUpdateThreads + threadIdx.x; row < rows; row += stride) {
    const int64_t b = row / D, d = row - b * D;
    const int64_t slot = p.stateBatchIndices ? int64_t(p.stateBatchIndices[b]) : b;
    if (slot < 0) {  // padding row of a continuous batch: zeros out, state untouched
      out[row] = Element<DT>::store(0.0f);
      continue;
    }
    // window[k] for k < W - 1 is state column k (the oldest first); window[W - 1] is x, chosen in
    // the loop so that no index depends on the runtime width.
    Storage window[kMaxW];
    Storage *const rowState = state + (slot * D + d) * H;
#pragma unroll
    for (int k = 0; k < kMaxW; ++k)
      if (k < width) window[k] = k < H ? rowState[k] : x[row];
    const float *const w = p.weight + d * width;
    float acc = p.bias ? p.bias[d] : 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxW; ++k)
      if (k < width) acc += w[k] * Element<DT>::load(window[k]);
    out[row] = Element<DT>::store(p.silu ? silu(acc) : acc);
#pragma unroll
    for (int k = 0; k + 1 < kMaxW; ++k)
      if (k < H) rowState[k] = window[k + 1];
  }
}

}  // namespace

gpu::Status convUpdate(const ConvUpdateParams &p, gpu::Stream stream) {
  if (p.batch < 0 || p.dim < 0) return cudaErrorInvalidValue;
  const int64_t rows = p.batch * p.dim;
  if (rows == 0) return cudaSuccess;
  return dispatchDType(p.dtype, [&](auto dtype) {
    return dispatchWidth(p.width, [&](auto width) {
      convUpdateKernel<decltype(dtype)::value, decltype(width)::value>
          <<<gridBlocks(ceilDiv(rows, kConvUpdateThreads)), kConvUpdateThreads, 0, stream>>>(p);
      return cudaGetLastError();
    });
  });
}

}  // namespace ss::cuda
