// The op layer: how an op's native functions are registered and where every op call is dispatched
// to the CPU or the GPU. An op registers each of its native functions with one line in its
// binding file (csrc/ops/<op>/<op>_binding.cc):
//
//   SS_REGISTER_OP(scanForward, "selectiveScan", ScanForwardParams, readScanForward, cpu::scanForward,
//                  cuda::scanForward);
//
// which defines the native function `scanForward(descriptor)`: it reads the descriptor into the
// params struct with `readScanForward(Descriptor &, ScanForwardParams &)`, then runs
// cpu::scanForward(params) when the descriptor's device is the host, or queues
// cuda::scanForward(params, stream) on the device's stream. addon.cc exports every registered
// function; lib/native.ts types them.
#pragma once
#include <napi.h>

#include <cstdint>

#include "../gpu.h"
#include "../napi_errors.h"
#include "descriptor.h"

namespace ss::op {

using NativeFunction = Napi::Value (*)(const Napi::CallbackInfo &);

// Adds a native function to the addon's exports; one static Registration per function, made
// when the addon is loaded. Every exported function runs inside `guarded` (napi_errors.h): CUDA
// errors keep their code, a failed host allocation is ERR_OUT_OF_MEMORY.
struct Registration {
  Registration(const char *name, NativeFunction fn);
};
void exportAll(Napi::Env env, Napi::Object exports);

// Stages a CUDA op's host index arrays (Descriptor::indices) on the device for the length of the
// call: uploaded on the device's stream before the op, freed on it after (stream-ordered).
class StagedIndices {
 public:
  explicit StagedIndices(const Descriptor &d);
  ~StagedIndices();
  StagedIndices(const StagedIndices &) = delete;
  StagedIndices &operator=(const StagedIndices &) = delete;

 private:
  int device_;
  std::vector<void *> buffers_;
};

template <class Params>
struct Backends {
  void (*read)(Descriptor &, Params &);
  void (*cpu)(const Params &);
  gpu::Status (*cuda)(const Params &, gpu::Stream);  // null: no CUDA backend in this build
};

[[noreturn]] void noCudaBackend(const char *publicName);

// Runs an op where its tensors live. Ops return nothing: lib/ allocates their outputs.
template <class Params>
Napi::Value run(const Napi::CallbackInfo &info, const char *publicName, const Backends<Params> &backends) {
  Descriptor d(info);
  Params p;
  backends.read(d, p);
  if (d.onHost()) {
    backends.cpu(p);
  } else {
    if (!backends.cuda) noCudaBackend(publicName);
    StagedIndices staged(d);
    gpu::launch(d.device(), publicName, [&](gpu::Stream stream) { return backends.cuda(p, stream); });
  }
  return d.env().Undefined();
}

// A query (a value an op's TypeScript needs before it allocates, e.g. the checkpoint interval),
// answered by the backend of the descriptor's device.
template <class Params>
struct QueryBackends {
  void (*read)(Descriptor &, Params &);
  int64_t (*cpu)(const Params &);
  int64_t (*cuda)(const Params &);  // null: no CUDA backend in this build
};

template <class Params>
Napi::Value query(const Napi::CallbackInfo &info, const char *publicName, const QueryBackends<Params> &backends) {
  Descriptor d(info);
  Params p;
  backends.read(d, p);
  if (d.onHost()) return Napi::Number::New(d.env(), double(backends.cpu(p)));
  if (!backends.cuda) noCudaBackend(publicName);
  gpu::requireDevice(d.device());
  return Napi::Number::New(d.env(), double(backends.cuda(p)));
}

}  // namespace ss::op

#if defined(SS_WITH_CUDA)
#define SS_CUDA_BACKEND(fn) fn
#else
#define SS_CUDA_BACKEND(fn) nullptr
#endif

// One native function `name` that runs an op (see the top of this file).
#define SS_REGISTER_OP(name, publicName, Params, read, cpuFn, cudaFn)                                \
  static const ::ss::op::Registration name##Registration(#name, [](const Napi::CallbackInfo &info) { \
    return ::ss::op::run<Params>(info, publicName, {read, cpuFn, SS_CUDA_BACKEND(cudaFn)});          \
  })

// One native function `name` that answers a query (see op::query).
#define SS_REGISTER_QUERY(name, publicName, Params, read, cpuFn, cudaFn)                             \
  static const ::ss::op::Registration name##Registration(#name, [](const Napi::CallbackInfo &info) { \
    return ::ss::op::query<Params>(info, publicName, {read, cpuFn, SS_CUDA_BACKEND(cudaFn)});        \
  })

// Any other native function of an op.
#define SS_REGISTER_FUNCTION(name, fn) static const ::ss::op::Registration name##Registration(#name, fn)
