// The backends as JavaScript sees them (lib/backend.ts): CUDA availability and devices,
// synchronisation, build information, the CPU thread count, device memory, the host cache; and, for the
// benchmarks only (lib/internal.ts), timing events and exp2 rates.
#include <napi.h>

#include <mutex>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/host_allocator.h"
#include "cpu/thread_pool.h"
#include "gpu.h"
#include "napi_errors.h"
#include "op/registry.h"
#include "storage.h"

namespace ss {
namespace {

int deviceArgument(const Napi::CallbackInfo &info, size_t index) {
  const Napi::Value v = info[index];
  const double device = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -2;
  if (!(device >= -1 && device < 1 << 16) || device != double(int(device)))
    internalError(info.Env(), "bad device index");
  return int(device);
}

class SynchronizeWorker : public Napi::AsyncWorker {
 public:
  SynchronizeWorker(Napi::Env env, int device)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), device_(device) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      gpu::synchronize(device_);
    } catch (const gpu::Error &e) {
      code_ = e.code;
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error &e) override {
    Napi::Error error = Napi::Error::New(Env(), e.Message());
    error.Set("code", Napi::String::New(Env(), code_.empty() ? "ERR_CUDA" : code_));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  int device_;
  std::string code_;
};

Napi::Value Synchronize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int device = deviceArgument(info, 0);
  gpu::requireDevice(device);
  auto *worker = new SynchronizeWorker(env, device);
  worker->Queue();
  return worker->promise();
}

Napi::Value RequireDevice(const Napi::CallbackInfo &info) {
  gpu::requireDevice(deviceArgument(info, 0));
  return info.Env().Undefined();
}

Napi::Value CudaInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const std::string reason = gpu::unavailableReason();
  o.Set("compiled", gpu::compiledWithCuda());
  o.Set("available", reason.empty());
  o.Set("reason", reason.empty() ? env.Null() : Napi::String::New(env, reason));
  o.Set("deviceCount", reason.empty() ? gpu::deviceCount() : 0);
  return o;
}

Napi::Value BuildInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", SS_VERSION);
  o.Set("cuda", gpu::compiledWithCuda());
  const std::string runtime = gpu::runtimeVersion();
  o.Set("cudaRuntime", runtime.empty() ? env.Null() : Napi::String::New(env, runtime));
  const auto archs = gpu::architectures();
  Napi::Array list = Napi::Array::New(env, archs.size());
  for (size_t i = 0; i < archs.size(); ++i) list.Set(uint32_t(i), archs[i]);
  o.Set("cudaArchitectures", list);
  o.Set("cpuThreads", cpu::threadCount());
  o.Set("cpuIsa", cpu::activeIsaName());
  return o;
}

Napi::Value MemoryInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int device = deviceArgument(info, 0);
  const gpu::MemoryInfo m = gpu::memoryInfo(device);
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocatedBytes", double(m.allocated));
  o.Set("peakAllocatedBytes", double(m.peakAllocated));
  o.Set("reservedBytes", double(m.reserved));
  o.Set("freeBytes", double(m.free));
  o.Set("totalBytes", double(m.total));
  return o;
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo &info) {
  gpu::resetPeakMemory(deviceArgument(info, 0));
  return info.Env().Undefined();
}

// The events recordEvent made that are still alive: elapsedMs takes no other External (another
// addon's, say) for one.
std::mutex eventsMutex;
std::unordered_set<void *> liveEvents;

// recordEvent(device): a timing event queued on the device's stream; elapsedMs(start, end).
Napi::Value RecordEvent(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  void *event = gpu::recordEvent(deviceArgument(info, 0));
  {
    std::lock_guard<std::mutex> lock(eventsMutex);
    liveEvents.insert(event);
  }
  return Napi::External<void>::New(env, event, [](Napi::Env, void *e) {
    {
      std::lock_guard<std::mutex> lock(eventsMutex);
      liveEvents.erase(e);
    }
    gpu::destroyEvent(e);
  });
}

void *eventArgument(const Napi::CallbackInfo &info, size_t index) {
  void *event = info[index].IsExternal() ? info[index].As<Napi::External<void>>().Data() : nullptr;
  std::lock_guard<std::mutex> lock(eventsMutex);
  if (!liveEvents.count(event)) internalError(info.Env(), "elapsedMs takes two events of recordEvent");
  return event;
}

Napi::Value ElapsedMs(const Napi::CallbackInfo &info) {
  void *start = eventArgument(info, 0), *end = eventArgument(info, 1);
  return Napi::Number::New(info.Env(), gpu::elapsedMs(start, end));
}

// measureExp2Rate(device): exp2 evaluations per second on the CPU (-1, all threads) or a GPU.
Napi::Value MeasureExp2Rate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int device = deviceArgument(info, 0);
  return Napi::Number::New(env, device == kHostDevice ? cpu::measureExp2Rate() : gpu::measureExp2Rate(device));
}

Napi::Value SetNumThreads(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Napi::Value n = info[0];
  const double threads = n.IsNumber() ? n.As<Napi::Number>().DoubleValue() : 0;
  if (!(threads >= 1 && threads <= cpu::kMaxThreads) || threads != double(int(threads)))
    internalError(env, "bad thread count");
  try {
    cpu::setThreadCount(int(threads));
  } catch (const std::system_error &e) {
    throw Napi::RangeError::New(env, "setNumThreads: could not start " + std::to_string(int(threads)) + " threads (" +
                                         e.what() + "); the CPU backend runs with " +
                                         std::to_string(cpu::threadCount()));
  }
  return env.Undefined();
}

// setHostCacheLimit(bytes): lib/backend.ts checked the number; this check keeps a bad one from
// reaching the allocator whatever calls it.
Napi::Value SetHostCacheLimit(const Napi::CallbackInfo &info) {
  const Napi::Value v = info[0];
  const double bytes = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(bytes >= 0 && bytes <= double(cpu::kMaxHostBytes)) || bytes != double(uint64_t(bytes)))
    internalError(info.Env(), "bad host cache limit");
  cpu::setHostCacheLimit(size_t(bytes));
  return info.Env().Undefined();
}

Napi::Value EmptyHostCache(const Napi::CallbackInfo &info) {
  cpu::emptyHostCache();
  return info.Env().Undefined();
}

// Byte counts as doubles: exact, as every one is below kMaxHostBytes (2^50) times a few.
Napi::Value HostMemoryInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const cpu::HostMemoryInfo m = cpu::hostMemoryInfo();
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocatedBytes", double(m.allocatedBytes));
  o.Set("peakAllocatedBytes", double(m.peakAllocatedBytes));
  o.Set("cachedBytes", double(m.cachedBytes));
  o.Set("cacheLimitBytes", double(m.cacheLimitBytes));
  o.Set("cacheHits", double(m.cacheHits));
  o.Set("cacheMisses", double(m.cacheMisses));
  return o;
}

// takeEnvironmentWarnings(): what was wrong with the environment variables the addon reads, to
// the first caller in the process (lib/native.ts emits them as warnings when it loads).
Napi::Value TakeEnvironmentWarnings(const Napi::CallbackInfo &info) {
  const std::vector<std::string> warnings = cpu::takeEnvironmentWarnings();
  Napi::Array list = Napi::Array::New(info.Env(), warnings.size());
  for (size_t i = 0; i < warnings.size(); ++i) list.Set(uint32_t(i), warnings[i]);
  return list;
}

}  // namespace

SS_REGISTER_FUNCTION(synchronize, Synchronize);
SS_REGISTER_FUNCTION(requireDevice, RequireDevice);
SS_REGISTER_FUNCTION(cudaInfo, CudaInfo);
SS_REGISTER_FUNCTION(buildInfo, BuildInfo);
SS_REGISTER_FUNCTION(setNumThreads, SetNumThreads);
SS_REGISTER_FUNCTION(takeEnvironmentWarnings, TakeEnvironmentWarnings);
SS_REGISTER_FUNCTION(memoryInfo, MemoryInfo);
SS_REGISTER_FUNCTION(resetPeakMemory, ResetPeakMemory);
SS_REGISTER_FUNCTION(setHostCacheLimit, SetHostCacheLimit);
SS_REGISTER_FUNCTION(emptyHostCache, EmptyHostCache);
SS_REGISTER_FUNCTION(hostMemoryInfo, HostMemoryInfo);
// Benchmark support (lib/internal.ts), not part of the public API.
SS_REGISTER_FUNCTION(recordEvent, RecordEvent);
SS_REGISTER_FUNCTION(elapsedMs, ElapsedMs);
SS_REGISTER_FUNCTION(measureExp2Rate, MeasureExp2Rate);

}  // namespace ss
