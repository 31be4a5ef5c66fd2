// The contents of tensors: writing values and 16-bit patterns from JavaScript, reading them back
// (synchronously, or as a Promise that waits off the JavaScript thread), and copies between
// devices and dtypes. lib/tensor.ts is the only caller; it passes storages and sizes it checked.
#include <napi.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gpu.h"
#include "napi_errors.h"
#include "op/descriptor.h"
#include "op/registry.h"
#include "storage.h"

namespace ss {
namespace {

// ---- Element conversions on the host --------------------------------------------------------------

template <class Source>
void encode(const Source *src, DType t, int64_t n, void *dst) {
  dispatchDType(t, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    auto *out = static_cast<typename Element<T>::Storage *>(dst);
    if constexpr (std::is_same_v<Source, double>) {
      for (int64_t i = 0; i < n; ++i) out[i] = storeDouble<T>(src[i]);
    } else if constexpr (T == DType::Float32) {
      std::memcpy(out, src, size_t(n) * sizeof(float));
    } else {
      for (int64_t i = 0; i < n; ++i) out[i] = Element<T>::store(src[i]);
    }
  });
}

void decode(const void *src, DType t, int64_t n, float *dst) {
  dispatchDType(t, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    if constexpr (T == DType::Float32) {
      std::memcpy(dst, src, size_t(n) * sizeof(float));
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = loadElement<T>(src, i);
    }
  });
}

void convertHost(void *dst, DType dstType, const void *src, DType srcType, int64_t n) {
  if (dstType == srcType) {
    std::memmove(dst, src, size_t(n) * size_t(dtypeSize(dstType)));  // n checked by the caller
    return;
  }
  std::vector<float> wide(static_cast<size_t>(n));
  decode(src, srcType, n, wide.data());
  encode(wide.data(), dstType, n, dst);
}

// ---- Arguments ------------------------------------------------------------------------------------

DType dtypeArgument(const Napi::CallbackInfo &info, size_t index) {
  const Napi::Value v = info[index];
  const int32_t code = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -1;
  if (code < 0 || code > int32_t(DType::BFloat16)) internalError(info.Env(), "bad dtype code");
  return DType(code);
}

int64_t countArgument(const Napi::CallbackInfo &info, size_t index) {
  const Napi::Value v = info[index];
  const double n = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(n >= 0 && n <= 9007199254740991.0) || n != double(int64_t(n))) internalError(info.Env(), "bad element count");
  return int64_t(n);
}

// The typed array argument `index` if its real type (whatever its prototype claims) is `type`.
Napi::TypedArray typedArrayArgument(const Napi::CallbackInfo &info, size_t index, napi_typedarray_type type) {
  const Napi::Value v = info[index];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    internalError(info.Env(), "typed array of the wrong type");
  return v.As<Napi::TypedArray>();
}

// The storage argument `index`, checked to be live and to hold `elements` of type t.
Storage *liveStorage(const Napi::CallbackInfo &info, size_t index, int64_t elements, DType t) {
  Storage *s = Storage::FromValue(info[index], "argument");
  if (s->disposed()) throwCoded(info.Env(), "ERR_DISPOSED", "tensor was disposed");
  if (s->bytes() < op::checkedBytes(info.Env(), elements, dtypeSize(t), "tensor"))
    internalError(info.Env(), "storage smaller than the tensor");
  return s;
}

// ---- Writes ---------------------------------------------------------------------------------------

// writeValues(storage, dtype, Float64Array | Float32Array): rounds the values to dtype into the
// storage (float32 sources are narrowed in one rounding step; doubles as dtype.h explains).
Napi::Value WriteValues(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType t = dtypeArgument(info, 1);
  const bool singles = info[2].IsTypedArray() && info[2].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
  const Napi::TypedArray array = typedArrayArgument(info, 2, singles ? napi_float32_array : napi_float64_array);
  const int64_t n = int64_t(array.ElementLength());
  Storage *s = liveStorage(info, 0, n, t);
  auto encodeInto = [&](void *dst) {
    if (singles)
      encode(array.As<Napi::Float32Array>().Data(), t, n, dst);
    else
      encode(array.As<Napi::Float64Array>().Data(), t, n, dst);
  };
  if (s->onHost()) {
    encodeInto(s->data());
  } else {
    std::vector<char> staged(op::checkedBytes(env, n, dtypeSize(t), "values"));
    encodeInto(staged.data());
    gpu::upload(s->device(), s->data(), staged.data(), staged.size());
  }
  return env.Undefined();
}

// writeBits(storage, Uint16Array): raw 16-bit patterns.
Napi::Value WriteBits(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Napi::Uint16Array bits = typedArrayArgument(info, 1, napi_uint16_array).As<Napi::Uint16Array>();
  const int64_t n = int64_t(bits.ElementLength());
  Storage *s = liveStorage(info, 0, n, DType::Float16);
  const size_t bytes = size_t(n) * 2;
  if (s->onHost())
    std::memcpy(s->data(), bits.Data(), bytes);
  else
    gpu::upload(s->device(), s->data(), bits.Data(), bytes);
  return env.Undefined();
}

// ---- Reads ----------------------------------------------------------------------------------------

// readValues(storage, dtype, numel): a Float32Array of the decoded values (waits for the device).
Napi::Value ReadValues(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType t = dtypeArgument(info, 1);
  const int64_t n = countArgument(info, 2);
  Storage *s = liveStorage(info, 0, n, t);
  auto out = Napi::Float32Array::New(env, size_t(n));
  if (s->onHost()) {
    decode(s->data(), t, n, out.Data());
  } else {
    std::vector<char> staged(op::checkedBytes(env, n, dtypeSize(t), "values"));
    gpu::downloadSync(s->device(), staged.data(), s->data(), staged.size());
    decode(staged.data(), t, n, out.Data());
  }
  return out;
}

// readBits(storage, numel): a Uint16Array of the raw 16-bit patterns.
Napi::Value ReadBits(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int64_t n = countArgument(info, 1);
  Storage *s = liveStorage(info, 0, n, DType::Float16);
  auto out = Napi::Uint16Array::New(env, size_t(n));
  if (s->onHost())
    std::memcpy(out.Data(), s->data(), size_t(n) * 2);
  else
    gpu::downloadSync(s->device(), out.Data(), s->data(), size_t(n) * 2);
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
    decode(pending_->data(), type_, count_, out.Data());
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
  const DType t = dtypeArgument(info, 1);
  const int64_t n = countArgument(info, 2);
  Storage *s = liveStorage(info, 0, n, t);
  if (s->onHost()) {
    auto deferred = Napi::Promise::Deferred::New(env);
    auto out = Napi::Float32Array::New(env, size_t(n));
    decode(s->data(), t, n, out.Data());
    deferred.Resolve(out);
    return deferred.Promise();
  }
  auto *worker = new ReadWorker(env, info[0].As<Napi::Object>(), s, t, n);
  worker->Queue();
  return worker->promise();
}

// ---- Copies ---------------------------------------------------------------------------------------

// copy(dst, dstType, src, srcType, numel): between any two devices, converting the dtype.
Napi::Value Copy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const DType dstType = dtypeArgument(info, 1), srcType = dtypeArgument(info, 3);
  const int64_t n = countArgument(info, 4);
  Storage *dst = liveStorage(info, 0, n, dstType);
  Storage *src = liveStorage(info, 2, n, srcType);
  const size_t dstBytes = size_t(n) * size_t(dtypeSize(dstType)), srcBytes = size_t(n) * size_t(dtypeSize(srcType));
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
  return env.Undefined();
}

}  // namespace

SS_REGISTER_FUNCTION(writeValues, WriteValues);
SS_REGISTER_FUNCTION(writeBits, WriteBits);
SS_REGISTER_FUNCTION(readValues, ReadValues);
SS_REGISTER_FUNCTION(readValuesAsync, ReadValuesAsync);
SS_REGISTER_FUNCTION(readBits, ReadBits);
SS_REGISTER_FUNCTION(copy, Copy);

}  // namespace ss
