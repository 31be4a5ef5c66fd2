// The CUDA backend's ops, as the addon calls them. Each one only enqueues work on `stream` and
// returns; an error it can see before enqueueing (a failed launch, an allocation that failed) is
// returned, never thrown. Device pointers in the params; the caller has made the device current.
#pragma once
#include <cuda_runtime.h>

#include "../common/scan_params.h"

namespace ss::cuda {

// The checkpoint interval the forward uses for this shape; the backward must be given the same
// value back in ScanForwardParams::chunkLength.
int64_t forwardChunkLength(const ScanShape &shape);

cudaError_t scanForward(const ScanForwardParams &p, cudaStream_t stream);

// Allocates and frees its own scratch memory stream-ordered (cudaMallocAsync / cudaFreeAsync).
cudaError_t scanBackward(const ScanBackwardParams &p, cudaStream_t stream);

cudaError_t stateUpdate(const StateUpdateParams &p, cudaStream_t stream);

// Element-wise dtype conversion of n elements between two device buffers.
cudaError_t convert(void *dst, DType dstType, const void *src, DType srcType, int64_t n, cudaStream_t stream);

// A kernel of this binary, for asking the runtime whether the current device can run our code
// (cudaFuncGetAttributes fails with cudaErrorNoKernelImageForDevice where it cannot).
const void *probeKernel();

}  // namespace ss::cuda
