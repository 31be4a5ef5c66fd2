// The GPU layer of a CUDA build (see gpu.h): device discovery, one stream per device, stream-ordered
// memory from the devices' memory pools, pinned staging for host copies (a reused ring for small
// uploads), and error reporting.
//
// The CUDA runtime is linked statically, so this binary loads on machines without a driver; there
// the first CUDA call fails (cudaErrorInsufficientDriver or cudaErrorNoDevice) and every device is
// reported unavailable with the reason.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../gpu.h"
#include "cuda_ops.h"
#include "microbench.h"

namespace ss::gpu {
namespace {

std::string errorText(cudaError_t e) { return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"; }

[[noreturn]] void fail(cudaError_t e, const std::string &what, int device) {
  cudaGetLastError();  // clear a non-sticky error so that later calls are not blamed for it
  const std::string where = what + " on cuda:" + std::to_string(device);
  if (e == cudaErrorMemoryAllocation) throw Error("ERR_CUDA_OOM", where + ": out of GPU memory: " + errorText(e));
  throw Error("ERR_CUDA", where + " failed: " + errorText(e));
}

void check(cudaError_t e, const char *what, int device) {
  if (e != cudaSuccess) fail(e, what, device);
}

// Uploads of at most kStagingSlotBytes (a decoding step's stateBatchIndices, say) are staged through
// a ring of pinned slots made once per device and reused across calls: pinning and unpinning host
// memory are driver calls that cost far more than such a copy. A slot is overwritten only after the
// copy that last read it has completed (its event). Larger uploads pin a buffer of their own,
// released once their copy has completed (Device::staging, reapStaging).
constexpr size_t kStagingSlotBytes = size_t(64) << 10;
constexpr size_t kStagingSlots = 8;

struct StagingSlot {
  void *host = nullptr;
  cudaEvent_t done = nullptr;  // recorded after the copy that last read the slot
};

struct Device {
  bool usable = false;
  std::string reason;  // why not, when not usable
  cudaStream_t stream = nullptr;
  // Pinned buffers of large uploads, released once the copy that reads them has completed.
  std::deque<std::pair<void *, cudaEvent_t>> staging;
  std::vector<StagingSlot> ring;  // made at the first small upload
  size_t nextSlot = 0;
  bool ringUnavailable = false;  // pinning the ring failed: every upload takes the per-call path
};

class Runtime {
 public:
  static Runtime &get() {
    static Runtime runtime;
    return runtime;
  }

  std::string reason;  // empty when at least one device is usable
  std::vector<Device> devices;
  std::mutex mutex;  // guards the staging lists and rings

  // Makes `device` current and returns its stream; throws ERR_CUDA_UNAVAILABLE when unusable.
  cudaStream_t use(int device) {
    requireUsable(device);
    check(cudaSetDevice(device), "cudaSetDevice", device);
    return devices[size_t(device)].stream;
  }

  void requireUsable(int device) {
    if (device < 0 || device >= int(devices.size())) {
      const std::string why =
          !reason.empty() ? reason : "there are only " + std::to_string(devices.size()) + " CUDA devices";
      throw Error("ERR_CUDA_UNAVAILABLE", "CUDA is unavailable for cuda:" + std::to_string(device) + ": " + why);
    }
    const Device &d = devices[size_t(device)];
    if (!d.usable)
      throw Error("ERR_CUDA_UNAVAILABLE", "CUDA is unavailable for cuda:" + std::to_string(device) + ": " + d.reason);
  }

  // The device's ring of staging slots, made on first use; null when it cannot be made (the caller
  // then stages through a buffer of its own, which reports the failure as before). Call with
  // `mutex` held and the device current.
  std::vector<StagingSlot> *stagingRing(int device) {
    Device &d = devices[size_t(device)];
    if (d.ring.empty() && !d.ringUnavailable) {
      void *block = nullptr;
      std::vector<StagingSlot> ring(kStagingSlots);
      bool ok = cudaMallocHost(&block, kStagingSlots * kStagingSlotBytes) == cudaSuccess;
      for (size_t k = 0; ok && k < kStagingSlots; ++k) {
        ring[k].host = static_cast<char *>(block) + k * kStagingSlotBytes;
        ok = cudaEventCreateWithFlags(&ring[k].done, cudaEventDisableTiming) == cudaSuccess;
      }
      if (!ok) {
        for (auto &slot : ring)
          if (slot.done) cudaEventDestroy(slot.done);
        if (block) cudaFreeHost(block);
        d.ringUnavailable = true;
      } else {
        d.ring = std::move(ring);
      }
      cudaGetLastError();
    }
    return d.ring.empty() ? nullptr : &d.ring;
  }

  // Releases the staging buffers whose copies have finished (in order of submission).
  void reapStaging(int device) {
    std::lock_guard<std::mutex> lock(mutex);
    auto &list = devices[size_t(device)].staging;
    while (!list.empty() && cudaEventQuery(list.front().second) == cudaSuccess) {
      cudaFreeHost(list.front().first);
      cudaEventDestroy(list.front().second);
      list.pop_front();
    }
    cudaGetLastError();
  }

 private:
  Runtime() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    cudaGetLastError();
    if (e == cudaErrorInsufficientDriver) {
      void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
      if (!driver) driver = dlopen("libcuda.so.1", RTLD_LAZY);
      reason = driver ? "the NVIDIA driver is too old for this build (CUDA " + runtimeVersion() +
                            " needs driver 580 or newer)"
                      : "no NVIDIA driver found";
      if (driver) dlclose(driver);
      return;
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
      reason = "no CUDA-capable GPU found";
      return;
    }
    if (e != cudaSuccess) {
      reason = "CUDA initialisation failed: " + errorText(e);
      return;
    }
    devices.resize(size_t(count));
    std::string firstReason;
    for (int i = 0; i < count; ++i) {
      Device &d = devices[size_t(i)];
      cudaDeviceProp prop;
      if (cudaSetDevice(i) != cudaSuccess || cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
        d.reason = "cannot open the device: " + errorText(cudaGetLastError());
      } else {
        // A GPU that the binary has neither machine code nor PTX for cannot run any kernel.
        cudaFuncAttributes attributes;
        const cudaError_t probe = cudaFuncGetAttributes(&attributes, cuda::probeKernel());
        cudaGetLastError();
        if (probe != cudaSuccess) {
          std::string built;
          for (const auto &a : architectures()) built += (built.empty() ? "" : ", ") + a;
          d.reason = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
                     ") is not supported by this build of selective-scan (built for " + built + ")";
        } else if (cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking) != cudaSuccess) {
          d.reason = "cannot create a stream: " + errorText(cudaGetLastError());
        } else {
          // Keep freed memory in the pool: allocations in a training loop then cost no driver call.
          cudaMemPool_t pool;
          if (cudaDeviceGetDefaultMemPool(&pool, i) == cudaSuccess) {
            uint64_t keep = UINT64_MAX;
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
          }
          cudaGetLastError();
          d.usable = true;
        }
      }
      if (!d.usable && firstReason.empty()) firstReason = "cuda:" + std::to_string(i) + ": " + d.reason;
    }
    bool any = false;
    for (const auto &d : devices) any = any || d.usable;
    if (!any) reason = firstReason;
  }
};

}  // namespace

bool compiledWithCuda() { return true; }
std::string unavailableReason() { return Runtime::get().reason; }
int deviceCount() { return int(Runtime::get().devices.size()); }

std::string runtimeVersion() {
  // The version this binary's (static) runtime implements, known at compile time.
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
}

std::vector<std::string> architectures() { return {SS_CUDA_ARCHS}; }

void requireDevice(int device) { Runtime::get().requireUsable(device); }

void *allocate(int device, size_t bytes) {
  cudaStream_t stream = Runtime::get().use(device);
  void *p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes, stream);
  if (e != cudaSuccess) {
    size_t freeBytes = 0, totalBytes = 0;
    cudaGetLastError();
    cudaMemGetInfo(&freeBytes, &totalBytes);
    cudaGetLastError();
    if (e == cudaErrorMemoryAllocation) {
      throw Error("ERR_CUDA_OOM", "out of GPU memory on cuda:" + std::to_string(device) + ": allocating " +
                                      std::to_string(bytes) + " bytes with " + std::to_string(freeBytes) + " free of " +
                                      std::to_string(totalBytes));
    }
    fail(e, "cudaMallocAsync", device);
  }
  return p;
}

void release(int device, void *ptr) {
  // Called from finalizers, also while the process exits: never throws, errors are dropped.
  Runtime &rt = Runtime::get();
  if (device < 0 || device >= int(rt.devices.size()) || !rt.devices[size_t(device)].usable) return;
  if (cudaSetDevice(device) == cudaSuccess) cudaFreeAsync(ptr, rt.devices[size_t(device)].stream);
  cudaGetLastError();
}

void fillBytes(int device, void *ptr, size_t bytes, unsigned char value) {
  check(cudaMemsetAsync(ptr, value, bytes, Runtime::get().use(device)), "cudaMemsetAsync", device);
}

void upload(int device, void *dst, const void *src, size_t bytes) {
  Runtime &rt = Runtime::get();
  cudaStream_t stream = rt.use(device);
  rt.reapStaging(device);
  if (bytes <= kStagingSlotBytes) {
    std::lock_guard<std::mutex> lock(rt.mutex);
    if (std::vector<StagingSlot> *ring = rt.stagingRing(device)) {
      Device &d = rt.devices[size_t(device)];
      StagingSlot &slot = (*ring)[d.nextSlot];
      d.nextSlot = (d.nextSlot + 1) % ring->size();
      // The copy that last read this slot must be done before it is overwritten: it is the upload
      // kStagingSlots calls ago, in stream order, normally long finished. Should that copy have
      // faulted, the error is sticky and the copy below reports it.
      cudaEventSynchronize(slot.done);
      cudaGetLastError();
      std::memcpy(slot.host, src, bytes);
      cudaError_t e = cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream);
      if (e == cudaSuccess) e = cudaEventRecord(slot.done, stream);
      if (e != cudaSuccess) {
        cudaStreamSynchronize(stream);  // the slot is free again once nothing reads it
        fail(e, "upload", device);
      }
      return;
    }
  }
  void *staging = nullptr;
  check(cudaMallocHost(&staging, bytes), "cudaMallocHost", device);
  std::memcpy(staging, src, bytes);
  cudaEvent_t done = nullptr;
  cudaError_t e = cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, stream);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventRecord(done, stream);
  if (e != cudaSuccess) {
    cudaStreamSynchronize(stream);
    cudaFreeHost(staging);
    if (done) cudaEventDestroy(done);
    fail(e, "upload", device);
  }
  std::lock_guard<std::mutex> lock(rt.mutex);
  rt.devices[size_t(device)].staging.emplace_back(staging, done);
}

void downloadSync(int device, void *dst, const void *src, size_t bytes) {
  cudaStream_t stream = Runtime::get().use(device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "download", device);
  check(cudaStreamSynchronize(stream), "download", device);
}

void copyDevice(int dstDevice, void *dst, int srcDevice, const void *src, size_t bytes) {
  Runtime &rt = Runtime::get();
  if (dstDevice == srcDevice) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, rt.use(dstDevice)), "cudaMemcpyAsync", dstDevice);
    return;
  }
  // The copy runs on the destination's stream after the source's prior work, and the source's
  // later work (a free, say) waits for the copy.
  cudaStream_t srcStream = rt.use(srcDevice);
  cudaEvent_t srcReady, copied;
  check(cudaEventCreateWithFlags(&srcReady, cudaEventDisableTiming), "cudaEventCreate", srcDevice);
  check(cudaEventRecord(srcReady, srcStream), "cudaEventRecord", srcDevice);
  cudaStream_t dstStream = rt.use(dstDevice);
  check(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming), "cudaEventCreate", dstDevice);
  check(cudaStreamWaitEvent(dstStream, srcReady, 0), "cudaStreamWaitEvent", dstDevice);
  check(cudaMemcpyPeerAsync(dst, dstDevice, src, srcDevice, bytes, dstStream), "cudaMemcpyPeerAsync", dstDevice);
  check(cudaEventRecord(copied, dstStream), "cudaEventRecord", dstDevice);
  srcStream = rt.use(srcDevice);
  check(cudaStreamWaitEvent(srcStream, copied, 0), "cudaStreamWaitEvent", srcDevice);
  cudaEventDestroy(srcReady);  // destruction is deferred by CUDA until the events complete
  cudaEventDestroy(copied);
}

void convert(int device, void *dst, DType dstType, const void *src, DType srcType, int64_t n) {
  check(cuda::convert(dst, dstType, src, srcType, n, Runtime::get().use(device)), "convert", device);
}

PendingDownload::PendingDownload(int device, const void *src, size_t bytes) : device_(device) {
  cudaStream_t stream = Runtime::get().use(device);
  check(cudaMallocHost(&host_, bytes == 0 ? 1 : bytes), "cudaMallocHost", device);
  cudaEvent_t event = nullptr;
  cudaError_t e = cudaMemcpyAsync(host_, src, bytes, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventRecord(event, stream);
  if (e != cudaSuccess) {  // the destructor does not run for a throwing constructor: clean up here
    cudaStreamSynchronize(stream);
    if (event) cudaEventDestroy(event);
    cudaFreeHost(host_);
    fail(e, "download", device);
  }
  event_ = event;
}

PendingDownload::~PendingDownload() {
  if (event_) {
    cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  if (host_) cudaFreeHost(host_);
  cudaGetLastError();
}

void PendingDownload::wait() {
  // Runs on a worker thread: only event calls, which need no current device.
  const cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
  if (e != cudaSuccess) {
    throw Error("ERR_CUDA", "reading a tensor on cuda:" + std::to_string(device_) +
                                " failed (an earlier operation on the device faulted): " + errorText(e));
  }
}

void synchronize(int device) {
  Runtime &rt = Runtime::get();
  rt.requireUsable(device);
  const cudaError_t e = cudaStreamSynchronize(rt.devices[size_t(device)].stream);
  if (e != cudaSuccess) {
    throw Error("ERR_CUDA",
                "cuda:" + std::to_string(device) + ": queued work failed (asynchronous fault): " + errorText(e));
  }
  rt.reapStaging(device);
}

MemoryInfo memoryInfo(int device) {
  Runtime::get().use(device);
  MemoryInfo info;
  cudaMemPool_t pool;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool", device);
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &info.allocated), "cudaMemPoolGetAttribute",
        device);
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &info.peakAllocated), "cudaMemPoolGetAttribute",
        device);
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &info.reserved), "cudaMemPoolGetAttribute",
        device);
  size_t freeBytes = 0, totalBytes = 0;
  check(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo", device);
  info.free = freeBytes;
  info.total = totalBytes;
  return info;
}

void resetPeakMemory(int device) {
  Runtime::get().use(device);
  cudaMemPool_t pool;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool", device);
  uint64_t zero = 0;  // resets the high-water mark to the current use
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "cudaMemPoolSetAttribute", device);
}

void *recordEvent(int device) {
  cudaStream_t stream = Runtime::get().use(device);
  cudaEvent_t event;
  check(cudaEventCreate(&event), "cudaEventCreate", device);
  check(cudaEventRecord(event, stream), "cudaEventRecord", device);
  return event;
}

float elapsedMs(void *start, void *end) {
  float ms = 0;
  cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(end));
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end));
  if (e != cudaSuccess) fail(e, "cudaEventElapsedTime", -1);
  return ms;
}

void destroyEvent(void *event) {
  cudaEventDestroy(static_cast<cudaEvent_t>(event));
  cudaGetLastError();
}

double measureExp2Rate(int device) {
  Runtime &rt = Runtime::get();
  check(cudaStreamSynchronize(rt.use(device)), "cudaStreamSynchronize", device);
  double rate = 0;
  check(cuda::measureExp2Rate(&rate), "measureExp2Rate", device);
  return rate;
}

void launch(int device, const char *what, const std::function<Status(Stream)> &enqueue) {
  cudaStream_t stream = Runtime::get().use(device);
  const cudaError_t e = cudaError_t(enqueue(stream));
  if (e == cudaSuccess) return;
  // A fault of an earlier asynchronous op is sticky: every later call returns it, this launch's
  // included. The stream then reports the same error; say so rather than blame this op. Asked only
  // after a failure, so a successful launch costs no extra driver call.
  const cudaError_t earlier = cudaStreamQuery(stream);
  if (earlier == e) {
    cudaGetLastError();
    throw Error("ERR_CUDA", "cuda:" + std::to_string(device) + ": an earlier asynchronous operation failed (" +
                                errorText(e) + "); " + what + " was not run");
  }
  fail(e, what, device);
}

}  // namespace ss::gpu
