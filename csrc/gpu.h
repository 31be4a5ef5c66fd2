// The GPU as the rest of the addon sees it: plain C++ with no CUDA header, implemented by
// cuda/gpu_cuda.cc when the addon is built with CUDA and by gpu_stub.cc otherwise.
//
// One stream per device: every allocation, copy, free and kernel for a device is ordered on it, so
// freeing memory right after queueing work that reads it is safe. Functions throw ss::gpu::Error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/dtype.h"

struct CUstream_st;  // what cudaStream_t points to (declared here at global scope, as CUDA does)

namespace ss::gpu {

// What the CUDA code of an op sees, without the CUDA headers: the stream it queues its work on
// (cudaStream_t) and the status it returns (a cudaError_t; 0 is success).
using Stream = ::CUstream_st *;
using Status = int;

struct Error : std::runtime_error {
  std::string code;  // ERR_CUDA, ERR_CUDA_OOM, ERR_CUDA_UNAVAILABLE
  Error(std::string code_, const std::string &message) : std::runtime_error(message), code(std::move(code_)) {}
};

bool compiledWithCuda();
// Empty when CUDA is usable; otherwise why not (no driver, no device, no code for this GPU...).
std::string unavailableReason();
int deviceCount();
std::string runtimeVersion();              // e.g. "13.0"; empty without CUDA
std::vector<std::string> architectures();  // e.g. {"sm_90", "compute_90"}

// Throws ERR_CUDA_UNAVAILABLE (with the reason) unless `device` is a usable device index.
void requireDevice(int device);

void *allocate(int device, size_t bytes);  // stream-ordered; ERR_CUDA_OOM when out of memory
void release(int device, void *ptr);       // stream-ordered; never throws
void fillBytes(int device, void *ptr, size_t bytes, unsigned char value);

// Host <-> device. The host side of an upload may be reused as soon as the call returns (it is
// staged through pinned memory: a slot of a ring reused across calls for small uploads, else a
// buffer released once the copy has completed).
void upload(int device, void *dst, const void *src, size_t bytes);
void downloadSync(int device, void *dst, const void *src, size_t bytes);  // waits for the stream
// Device -> device, possibly across devices; ordered after prior work on both devices' streams.
void copyDevice(int dstDevice, void *dst, int srcDevice, const void *src, size_t bytes);
void convert(int device, void *dst, DType dstType, const void *src, DType srcType, int64_t n);

// An asynchronous download: start() queues the copy into pinned memory; wait() blocks until it
// is done (call it off the JavaScript thread); data() is the pinned host copy.
class PendingDownload {
 public:
  PendingDownload(int device, const void *src, size_t bytes);
  ~PendingDownload();
  PendingDownload(const PendingDownload &) = delete;
  PendingDownload &operator=(const PendingDownload &) = delete;
  void wait();  // throws Error for a failed copy or an earlier asynchronous fault on the stream
  const void *data() const { return host_; }

 private:
  int device_;
  void *host_ = nullptr;
  void *event_ = nullptr;
};

// Waits for all queued work on the device; reports any asynchronous fault as ERR_CUDA.
void synchronize(int device);

// Memory of the device's pool (bytes): what live tensors hold, the most they held since the last
// reset, and what the pool keeps reserved from the driver; free and total device memory.
struct MemoryInfo {
  uint64_t allocated = 0, peakAllocated = 0, reserved = 0, free = 0, total = 0;
};
MemoryInfo memoryInfo(int device);
void resetPeakMemory(int device);

// Timing events on the device's stream (for benchmarks).
void *recordEvent(int device);
float elapsedMs(void *start, void *end);  // waits for `end`
void destroyEvent(void *event);
double measureExp2Rate(int device);  // exp2 evaluations per second (roofline of the benchmarks)

// Queues an op on the device's stream: makes the device current, calls enqueue(stream), and turns a
// failed status into an Error naming `what` (the op's public name). The op layer's one way to the GPU.
void launch(int device, const char *what, const std::function<Status(Stream)> &enqueue);

}  // namespace ss::gpu
