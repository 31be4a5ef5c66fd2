// The backward state space dual scan on the GPU: not written yet (GPU calls throw
// ERR_CUDA_UNAVAILABLE from the binding, which registers no CUDA backward).
#include "ssd_scan_cuda.cuh"

namespace ss::cuda {
gpu::Status ssdBackward(const SsdBackwardParams &, gpu::Stream) { return cudaErrorInvalidValue; }
}  // namespace ss::cuda
