#pragma once
#include <cuda_runtime.h>

namespace ss::cuda {
// exp2f evaluations per second on the current device (synchronises the device).
cudaError_t measureExp2Rate(double *expPerSecond);
}  // namespace ss::cuda
