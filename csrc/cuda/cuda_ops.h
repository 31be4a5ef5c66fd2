// Kernels of the GPU runtime itself (not ops): dtype conversion, and the probe the runtime asks
// whether this binary can run on a device. Each only enqueues work on `stream` and returns the
// launch's error; the caller has made the device current.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/dtype.h"

namespace ss::cuda {

// Element-wise dtype conversion of n elements between two device buffers.
cudaError_t convert(void *dst, DType dstType, const void *src, DType srcType, int64_t n, cudaStream_t stream);

// A kernel of this binary, for asking the runtime whether the current device can run our code
// (cudaFuncGetAttributes fails with cudaErrorNoKernelImageForDevice where it cannot).
const void *probeKernel();

}  // namespace ss::cuda
