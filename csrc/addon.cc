// The native module: storage, conversions and copies, and the three ops on either backend.
//
// The TypeScript layer (lib/) checks every argument a user passes and turns it into a plain
// descriptor object; this file only re-checks what memory safety needs (every pointer it hands a
// kernel must cover the bytes the kernel will touch) and reports violations as internal errors.
#include <napi.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/scan_params.h"
#include "cpu/cpu_backend.h"
#include "gpu.h"
#include "storage.h"

namespace ss {
namespace {

[[noreturn]] void internalError(Napi::Env env, const std::string &message) {
  throw Napi::Error::New(env, "selective-scan internal error: " + message);
}

DType dtypeFrom(Napi::Env env, Napi::Value v) {
  const int code = v.As<Napi::Number>().Int32Value();
  if (code < 0 || code > 2) internalError(env, "bad dtype code");
  return DType(code);
}

// Runs f, turning a gpu::Error into a JavaScript Error with its code.
template <class F>
auto guarded(Napi::Env env, F &&f) -> decltype(f()) {
  try {
    return f();
  } catch (const gpu::Error &e) {
    throwCoded(env, e.code.c_str(), e.what());
  } catch (const std::bad_alloc &) {
    throwCoded(env, "ERR_OUT_OF_MEMORY", "out of host memory");
  }
}

// ---- Element conversions on the host ------------------------------------------------------------

void encodeDoubles(const double *src, DType t, int64_t n, void *dst) {
  switch (t) {
    case DType::Float32:
      for (int64_t i = 0; i < n; ++i) static_cast<float *>(dst)[i] = float(src[i]);
      break;
    case DType::Float16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t *>(dst)[i] = doubleToHalf(src[i]);
      break;
    case DType::BFloat16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t *>(dst)[i] = doubleToBfloat16(src[i]);
      break;
  }
}

void decodeToFloats(const void *src, DType t, int64_t n, float *dst) {
  switch (t) {
    case DType::Float32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::Float16:
      for (int64_t i = 0; i < n; ++i) dst[i] = halfToFloat(static_cast<const uint16_t *>(src)[i]);
      break;
    case DType::BFloat16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bfloat16ToFloat(static_cast<const uint16_t *>(src)[i]);
      break;
  }
}

void encodeFloats(const float *src, DType t, int64_t n, void *dst) {
  switch (t) {
    case DType::Float32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::Float16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t *>(dst)[i] = floatToHalf(src[i]);
      break;
    case DType::BFloat16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t *>(dst)[i] = floatToBfloat16(src[i]);
      break;
  }
}

void convertHost(void *dst, DType dstType, const void *src, DType srcType, int64_t n) {
  if (dstType == srcType) {
    std::memmove(dst, src, size_t(n) * size_t(dtypeSize(dstType)));
    return;
  }
  std::vector<float> wide(static_cast<size_t>(n));
  decodeToFloats(src, srcType, n, wide.data());
  encodeFloats(wide.data(), dstType, n, dst);
}

// The storage argument `index` of a call, checked to be live and to hold `bytes`.
Storage *liveStorage(const Napi::CallbackInfo &info, size_t index, size_t bytes) {
  Storage *s = Storage::FromValue(info[index], "argument");
  if (s->disposed()) throwCoded(info.Env(), "ERR_DISPOSED", "tensor was disposed");
  if (s->bytes() < bytes) internalError(info.Env(), "storage smaller than the tensor");
  return s;
}

// ---- Storage contents ---------------------------------------------------------------------------

// writeValues(storage, dtype, Float64Array | Float32Array): rounds the values to dtype into the
// storage (float32 sources are narrowed in one rounding step; doubles as dtype.h explains).
Napi::Value WriteValues(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType t = dtypeFrom(env, info[1]);
  auto array = info[2].As<Napi::TypedArray>();
  const bool singles = array.TypedArrayType() == napi_float32_array;
  if (!singles && array.TypedArrayType() != napi_float64_array)
    internalError(env, "values must be Float32Array or Float64Array");
  const int64_t n = int64_t(array.ElementLength());
  Storage *s = liveStorage(info, 0, size_t(n) * size_t(dtypeSize(t)));
  auto encode = [&](void *dst) {
    if (singles)
      encodeFloats(info[2].As<Napi::Float32Array>().Data(), t, n, dst);
    else
      encodeDoubles(info[2].As<Napi::Float64Array>().Data(), t, n, dst);
  };
  if (s->onHost()) {
    encode(s->data());
  } else {
    std::vector<char> staged(static_cast<size_t>(n) * dtypeSize(t));
    encode(staged.data());
    guarded(env, [&] { gpu::upload(s->device(), s->data(), staged.data(), staged.size()); });
  }
  return env.Undefined();
}

// writeBits(storage, Uint16Array): raw 16-bit patterns.
Napi::Value WriteBits(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto bits = info[1].As<Napi::Uint16Array>();
  const size_t bytes = bits.ElementLength() * 2;
  Storage *s = liveStorage(info, 0, bytes);
  if (s->onHost())
    std::memcpy(s->data(), bits.Data(), bytes);
  else
    guarded(env, [&] { gpu::upload(s->device(), s->data(), bits.Data(), bytes); });
  return env.Undefined();
}

// readValues(storage, dtype, numel): a Float32Array of the decoded values (waits for the device).
Napi::Value ReadValues(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType t = dtypeFrom(env, info[1]);
  const int64_t n = int64_t(info[2].As<Napi::Number>().Int64Value());
  Storage *s = liveStorage(info, 0, size_t(n) * size_t(dtypeSize(t)));
  auto out = Napi::Float32Array::New(env, size_t(n));
  if (s->onHost()) {
    decodeToFloats(s->data(), t, n, out.Data());
  } else {
    std::vector<char> staged(static_cast<size_t>(n) * dtypeSize(t));
    guarded(env, [&] { gpu::downloadSync(s->device(), staged.data(), s->data(), staged.size()); });
    decodeToFloats(staged.data(), t, n, out.Data());
  }
  return out;
}

// readBits(storage, numel): a Uint16Array of the raw 16-bit patterns.
Napi::Value ReadBits(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int64_t n = int64_t(info[1].As<Napi::Number>().Int64Value());
  Storage *s = liveStorage(info, 0, size_t(n) * 2);
  auto out = Napi::Uint16Array::New(env, size_t(n));
  if (s->onHost())
    std::memcpy(out.Data(), s->data(), size_t(n) * 2);
  else
    guarded(env, [&] { gpu::downloadSync(s->device(), out.Data(), s->data(), size_t(n) * 2); });
  return out;
}

// The asynchronous read of a device tensor: the copy is queued now, waited for on a libuv worker
// thread, and decoded on the JavaScript thread.
class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, Napi::Object storage, Storage *s, DType t, int64_t n)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), type_(t), count_(n) {
    storageRef_ = Napi::Persistent(storage);  // keeps the memory alive until the copy is done
    pending_ = std::make_unique<gpu::PendingDownload>(s->device(), s->data(), size_t(n) * size_t(dtypeSize(t)));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      pending_->wait();
    } catch (const gpu::Error &e) {
      code_ = e.code;
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto out = Napi::Float32Array::New(Env(), size_t(count_));
    decodeToFloats(pending_->data(), type_, count_, out.Data());
    pending_.reset();
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error &e) override {
    pending_.reset();
    Napi::Error error = Napi::Error::New(Env(), e.Message());
    error.Set("code", Napi::String::New(Env(), code_.empty() ? "ERR_CUDA" : code_));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference storageRef_;
  std::unique_ptr<gpu::PendingDownload> pending_;
  DType type_;
  int64_t count_;
  std::string code_;
};

// readValuesAsync(storage, dtype, numel): a Promise of the Float32Array.
Napi::Value ReadValuesAsync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType t = dtypeFrom(env, info[1]);
  const int64_t n = int64_t(info[2].As<Napi::Number>().Int64Value());
  Storage *s = liveStorage(info, 0, size_t(n) * size_t(dtypeSize(t)));
  if (s->onHost()) {
    auto deferred = Napi::Promise::Deferred::New(env);
    auto out = Napi::Float32Array::New(env, size_t(n));
    decodeToFloats(s->data(), t, n, out.Data());
    deferred.Resolve(out);
    return deferred.Promise();
  }
  auto *worker = guarded(env, [&] { return new ReadWorker(env, info[0].As<Napi::Object>(), s, t, n); });
  worker->Queue();
  return worker->promise();
}

// copy(dst, dstType, src, srcType, numel): between any two devices, converting the dtype.
Napi::Value Copy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType dstType = dtypeFrom(env, info[1]), srcType = dtypeFrom(env, info[3]);
  const int64_t n = int64_t(info[4].As<Napi::Number>().Int64Value());
  Storage *dst = liveStorage(info, 0, size_t(n) * size_t(dtypeSize(dstType)));
  Storage *src = liveStorage(info, 2, size_t(n) * size_t(dtypeSize(srcType)));
  const size_t dstBytes = size_t(n) * size_t(dtypeSize(dstType)), srcBytes = size_t(n) * size_t(dtypeSize(srcType));
  guarded(env, [&] {
    if (dst->onHost() && src->onHost()) {
      convertHost(dst->data(), dstType, src->data(), srcType, n);
    } else if (src->onHost()) {  // convert on the host, then upload
      std::vector<char> staged(dstBytes);
      convertHost(staged.data(), dstType, src->data(), srcType, n);
      gpu::upload(dst->device(), dst->data(), staged.data(), dstBytes);
    } else if (dst->onHost()) {  // download, then convert on the host
      std::vector<char> staged(srcBytes);
      gpu::downloadSync(src->device(), staged.data(), src->data(), srcBytes);
      convertHost(dst->data(), dstType, staged.data(), srcType, n);
    } else if (dstType == srcType) {
      gpu::copyDevice(dst->device(), dst->data(), src->device(), src->data(), dstBytes);
    } else if (dst->device() == src->device()) {
      gpu::convert(dst->device(), dst->data(), dstType, src->data(), srcType, n);
    } else {  // another GPU and another dtype: copy across, then convert there
      void *tmp = gpu::allocate(dst->device(), srcBytes);
      try {
        gpu::copyDevice(dst->device(), tmp, src->device(), src->data(), srcBytes);
        gpu::convert(dst->device(), dst->data(), dstType, tmp, srcType, n);
      } catch (...) {
        gpu::release(dst->device(), tmp);
        throw;
      }
      gpu::release(dst->device(), tmp);
    }
  });
  return env.Undefined();
}

// ---- Op descriptors -----------------------------------------------------------------------------

// Reads a descriptor object built by lib/: sizes, flags, and storages that must all live on the
// op's device and cover the bytes the op touches.
class Descriptor {
 public:
  Descriptor(Napi::Object o) : o_(o), env_(o.Env()) { device_ = int(integer("device")); }
  int device() const { return device_; }
  Napi::Env env() const { return env_; }

  int64_t integer(const char *key) const {
    Napi::Value v = o_.Get(key);
    if (!v.IsNumber()) internalError(env_, std::string("descriptor field ") + key + " missing");
    return v.As<Napi::Number>().Int64Value();
  }
  bool flag(const char *key) const { return o_.Get(key).ToBoolean(); }
  DType dtype() const { return dtypeFrom(env_, o_.Get("dtype")); }

  // The storage at `key` (nullptr if absent and optional), holding at least `elements` of `t`.
  template <class T = void>
  T *data(const char *key, int64_t elements, DType t, bool optional = false) const {
    Napi::Value v = o_.Get(key);
    if (v.IsUndefined() || v.IsNull()) {
      if (!optional) internalError(env_, std::string("descriptor field ") + key + " missing");
      return nullptr;
    }
    Storage *s = Storage::FromValue(v, key);
    if (s->disposed()) throwCoded(env_, "ERR_DISPOSED", std::string(key) + " was disposed");
    if (s->device() != device_) internalError(env_, std::string(key) + " is on another device");
    if (elements < 0 || s->bytes() < size_t(elements) * size_t(dtypeSize(t)))
      internalError(env_, std::string(key) + " is smaller than its shape");
    return static_cast<T *>(s->data());
  }
  float *floats(const char *key, int64_t elements, bool optional = false) const {
    return data<float>(key, elements, DType::Float32, optional);
  }

 private:
  Napi::Object o_;
  Napi::Env env_;
  int device_;
};

bool onHost(int device) { return device == kHostDevice; }

int64_t chunkLengthFor(int device, const ScanShape &shape) {
  return onHost(device) ? cpu::forwardChunkLength(shape) : gpu::forwardChunkLength(shape);
}

// The forward's inputs (shared by the forward and the backward descriptors).
ScanForwardParams readForwardInputs(const Descriptor &d) {
  ScanForwardParams p;
  p.shape = {d.integer("batch"), d.integer("dim"), d.integer("seqlen"), d.integer("dstate")};
  const int64_t batch = p.shape.batch, dim = p.shape.dim, L = p.shape.seqlen, N = p.shape.dstate;
  p.dtype = d.dtype();
  const int64_t rows = batch * dim * L;
  p.u = d.data("u", rows, p.dtype);
  p.delta = d.data("delta", rows, p.dtype);
  p.z = d.data("z", rows, p.dtype, true);
  p.A = d.floats("A", dim * N);
  for (auto [key, groupsKey, proj] : {std::tuple{"B", "groupsB", &p.B}, std::tuple{"C", "groupsC", &p.C}}) {
    proj->groups = d.integer(groupsKey);
    proj->data = proj->varying() ? d.data(key, batch * proj->groups * N * L, p.dtype) : d.floats(key, dim * N);
  }
  p.D = d.floats("D", dim, true);
  p.deltaBias = d.floats("deltaBias", dim, true);
  p.initialState = d.floats("initialState", batch * dim * N, true);
  p.deltaSoftplus = d.flag("deltaSoftplus");
  p.chunkLength = d.integer("chunkLength");
  const int64_t expected = guarded(d.env(), [&] { return chunkLengthFor(d.device(), p.shape); });
  if (p.chunkLength != expected) internalError(d.env(), "chunk length mismatch");
  return p;
}

int64_t chunkCount(const ScanForwardParams &p) { return (p.shape.seqlen + p.chunkLength - 1) / p.chunkLength; }

// chunkLength(device, batch, dim, seqlen, dstate): the checkpoint interval of that backend.
Napi::Value ChunkLength(const Napi::CallbackInfo &info) {
  const int device = info[0].As<Napi::Number>().Int32Value();
  ScanShape shape{info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int64Value(),
                  info[3].As<Napi::Number>().Int64Value(), info[4].As<Napi::Number>().Int64Value()};
  return Napi::Number::New(info.Env(), double(guarded(info.Env(), [&] { return chunkLengthFor(device, shape); })));
}

Napi::Value ScanForward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Descriptor d(info[0].As<Napi::Object>());
  ScanForwardParams p = readForwardInputs(d);
  const int64_t batch = p.shape.batch, dim = p.shape.dim, N = p.shape.dstate;
  p.out = d.data("out", batch * dim * p.shape.seqlen, p.dtype);
  p.lastState = d.floats("lastState", batch * dim * N, true);
  p.checkpoints = d.floats("checkpoints", batch * dim * chunkCount(p) * N, true);
  guarded(env, [&] {
    if (onHost(d.device()))
      cpu::scanForward(p);
    else
      gpu::scanForward(d.device(), p);
  });
  return env.Undefined();
}

Napi::Value ScanBackward(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Descriptor d(info[0].As<Napi::Object>());
  ScanBackwardParams p;
  p.fwd = readForwardInputs(d);
  const ScanForwardParams &f = p.fwd;
  const int64_t batch = f.shape.batch, dim = f.shape.dim, L = f.shape.seqlen, N = f.shape.dstate;
  const int64_t rows = batch * dim * L;
  p.fwd.checkpoints = d.floats("checkpoints", batch * dim * chunkCount(f) * N);
  p.dout = d.data("dout", rows, f.dtype);
  p.dLastState = d.floats("dLastState", batch * dim * N, true);
  p.deterministic = d.flag("deterministic");
  p.du = d.data("du", rows, f.dtype);
  p.ddelta = d.data("ddelta", rows, f.dtype);
  p.dz = f.z ? d.data("dz", rows, f.dtype) : nullptr;
  p.dA = d.floats("dA", dim * N);
  p.dB = f.B.varying() ? d.data("dB", batch * f.B.groups * N * L, f.dtype) : d.floats("dB", dim * N);
  p.dC = f.C.varying() ? d.data("dC", batch * f.C.groups * N * L, f.dtype) : d.floats("dC", dim * N);
  p.dD = f.D ? d.floats("dD", dim) : nullptr;
  p.ddeltaBias = f.deltaBias ? d.floats("ddeltaBias", dim) : nullptr;
  p.dInitialState = d.floats("dInitialState", batch * dim * N, true);
  guarded(env, [&] {
    if (onHost(d.device()))
      cpu::scanBackward(p);
    else
      gpu::scanBackward(d.device(), p);
  });
  return env.Undefined();
}

Napi::Value StateUpdate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Descriptor d(info[0].As<Napi::Object>());
  StateUpdateParams p;
  p.batch = d.integer("batch");
  p.heads = d.integer("heads");
  p.headDim = d.integer("headDim");
  p.dstate = d.integer("dstate");
  p.groups = d.integer("groups");
  p.stateSlots = d.integer("stateSlots");
  p.dtype = d.dtype();
  p.scalarPerHead = d.flag("scalarPerHead");
  p.dtSoftplus = d.flag("dtSoftplus");
  const int64_t B = p.batch, H = p.heads, P = p.headDim, N = p.dstate;
  p.state = d.floats("state", p.stateSlots * H * P * N);
  p.x = d.data("x", B * H * P, p.dtype);
  p.dt = d.data("dt", p.scalarPerHead ? B * H : B * H * P, p.dtype);
  p.z = d.data("z", B * H * P, p.dtype, true);
  p.B = d.data("B", B * p.groups * N, p.dtype);
  p.C = d.data("C", B * p.groups * N, p.dtype);
  p.A = d.floats("A", p.scalarPerHead ? H : H * P * N);
  const bool dPerHead = d.flag("dPerHead");
  p.D = d.floats("D", dPerHead ? H : H * P, true);
  p.dStrideHead = dPerHead ? 1 : P;
  p.dStrideP = dPerHead ? 0 : 1;
  p.dtBias = d.floats("dtBias", p.scalarPerHead ? H : H * P, true);
  p.y = d.data("y", B * H * P, p.dtype);
  std::vector<int32_t> indices;
  Napi::Value idx = info[0].As<Napi::Object>().Get("stateBatchIndices");
  if (idx.IsTypedArray()) {
    auto arr = idx.As<Napi::Int32Array>();
    if (int64_t(arr.ElementLength()) != B) internalError(env, "stateBatchIndices length");
    indices.assign(arr.Data(), arr.Data() + B);
    for (int32_t i : indices)
      if (i >= p.stateSlots) internalError(env, "stateBatchIndices out of range");
  }
  if (!indices.empty()) p.stateBatchIndices = indices.data();
  guarded(env, [&] {
    if (onHost(d.device())) {
      cpu::stateUpdate(p);
    } else {
      // The indices live on the host; the kernel reads them from the device.
      void *deviceIndices = nullptr;
      if (!indices.empty()) {
        deviceIndices = gpu::allocate(d.device(), indices.size() * 4);
        gpu::upload(d.device(), deviceIndices, indices.data(), indices.size() * 4);
        p.stateBatchIndices = static_cast<const int32_t *>(deviceIndices);
      }
      try {
        gpu::stateUpdate(d.device(), p);
      } catch (...) {
        if (deviceIndices) gpu::release(d.device(), deviceIndices);
        throw;
      }
      if (deviceIndices) gpu::release(d.device(), deviceIndices);
    }
  });
  return env.Undefined();
}

// ---- Backends -----------------------------------------------------------------------------------

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
  const int device = info[0].As<Napi::Number>().Int32Value();
  guarded(env, [&] { gpu::requireDevice(device); });
  auto *worker = new SynchronizeWorker(env, device);
  worker->Queue();
  return worker->promise();
}

Napi::Value RequireDevice(const Napi::CallbackInfo &info) {
  guarded(info.Env(), [&] { gpu::requireDevice(info[0].As<Napi::Number>().Int32Value()); });
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
  o.Set("cpuIsa", cpu::isaName());
  Napi::Array isas = Napi::Array::New(env);
  const char *compiled[] = {SS_CPU_ISAS};
  for (size_t i = 0; i < sizeof(compiled) / sizeof(compiled[0]); ++i) isas.Set(uint32_t(i), compiled[i]);
  o.Set("cpuIsasCompiled", isas);
  return o;
}

Napi::Value MemoryInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int device = info[0].As<Napi::Number>().Int32Value();
  const gpu::MemoryInfo m = guarded(env, [&] { return gpu::memoryInfo(device); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocatedBytes", double(m.allocated));
  o.Set("peakAllocatedBytes", double(m.peakAllocated));
  o.Set("reservedBytes", double(m.reserved));
  o.Set("freeBytes", double(m.free));
  o.Set("totalBytes", double(m.total));
  return o;
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo &info) {
  guarded(info.Env(), [&] { gpu::resetPeakMemory(info[0].As<Napi::Number>().Int32Value()); });
  return info.Env().Undefined();
}

// recordEvent(device): a timing event queued on the device's stream; elapsedMs(start, end).
Napi::Value RecordEvent(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  void *event = guarded(env, [&] { return gpu::recordEvent(info[0].As<Napi::Number>().Int32Value()); });
  return Napi::External<void>::New(env, event, [](Napi::Env, void *e) { gpu::destroyEvent(e); });
}

Napi::Value ElapsedMs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  void *start = info[0].As<Napi::External<void>>().Data();
  void *end = info[1].As<Napi::External<void>>().Data();
  return Napi::Number::New(env, guarded(env, [&] { return gpu::elapsedMs(start, end); }));
}

// measureExp2Rate(device): exp2 evaluations per second on the CPU (-1, all threads) or a GPU.
Napi::Value MeasureExp2Rate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int device = info[0].As<Napi::Number>().Int32Value();
  return Napi::Number::New(
      env, guarded(env, [&] { return onHost(device) ? cpu::measureExp2Rate() : gpu::measureExp2Rate(device); }));
}

Napi::Value SetNumThreads(const Napi::CallbackInfo &info) {
  cpu::setThreadCount(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

}  // namespace
}  // namespace ss

static Napi::Object InitSelectiveScan(Napi::Env env, Napi::Object exports) {
  using namespace ss;
  exports.Set("Storage", Storage::Init(env));
  exports.Set("writeValues", Napi::Function::New<WriteValues>(env));
  exports.Set("writeBits", Napi::Function::New<WriteBits>(env));
  exports.Set("readValues", Napi::Function::New<ReadValues>(env));
  exports.Set("readValuesAsync", Napi::Function::New<ReadValuesAsync>(env));
  exports.Set("readBits", Napi::Function::New<ReadBits>(env));
  exports.Set("copy", Napi::Function::New<Copy>(env));
  exports.Set("chunkLength", Napi::Function::New<ChunkLength>(env));
  exports.Set("scanForward", Napi::Function::New<ScanForward>(env));
  exports.Set("scanBackward", Napi::Function::New<ScanBackward>(env));
  exports.Set("stateUpdate", Napi::Function::New<StateUpdate>(env));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env));
  exports.Set("requireDevice", Napi::Function::New<RequireDevice>(env));
  exports.Set("cudaInfo", Napi::Function::New<CudaInfo>(env));
  exports.Set("buildInfo", Napi::Function::New<BuildInfo>(env));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env));
  exports.Set("memoryInfo", Napi::Function::New<MemoryInfo>(env));
  exports.Set("resetPeakMemory", Napi::Function::New<ResetPeakMemory>(env));
  exports.Set("recordEvent", Napi::Function::New<RecordEvent>(env));
  exports.Set("elapsedMs", Napi::Function::New<ElapsedMs>(env));
  exports.Set("measureExp2Rate", Napi::Function::New<MeasureExp2Rate>(env));
  return exports;
}

NODE_API_MODULE(selective_scan, InitSelectiveScan)
