#include "storage.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "gpu.h"
#include "napi_errors.h"

namespace ss {

namespace {
constexpr size_t kHostAlignment = 64;

// Marks the objects that are Storages (Node-API type tags): FromValue takes no other object for one,
// whatever its prototype says, and accepts the Storages of every instance of the addon in the
// process (a package loaded twice).
constexpr napi_type_tag kStorageTag = {0x5e1ec71e5ca45705, 0x7a6e5f0b0d1c2a93};

size_t roundUp(size_t n, size_t m) { return (n + m - 1) / m * m; }

// SELECTIVE_SCAN_POISON_ALLOCATIONS=1 fills every new, not zeroed allocation with 0xff bytes (NaN
// in all three dtypes), so that tests notice an output element that an op failed to write.
bool poisonAllocations() {
  static const bool poison = [] {
    const char *v = std::getenv("SELECTIVE_SCAN_POISON_ALLOCATIONS");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return poison;
}
}  // namespace

Napi::Function Storage::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "Storage",
                                    {
                                        InstanceMethod<&Storage::Dispose>("dispose"),
                                        InstanceAccessor<&Storage::GetPointer>("pointer"),
                                        InstanceAccessor<&Storage::GetBytes>("bytes"),
                                        InstanceAccessor<&Storage::GetDevice>("device"),
                                    });
  return ctor;
}

Storage *Storage::FromValue(Napi::Value value, const char *what) {
  Napi::Env env = value.Env();
  bool tagged = false;
  if (!value.IsObject() || napi_check_object_type_tag(env, value, &kStorageTag, &tagged) != napi_ok || !tagged)
    internalError(env, std::string(what) + " is not a Storage");
  return Napi::ObjectWrap<Storage>::Unwrap(value.As<Napi::Object>());
}

Storage::Storage(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Storage>(info) {
  Napi::Env env = info.Env();
  if (napi_type_tag_object(env, info.This(), &kStorageTag) != napi_ok) internalError(env, "cannot tag a Storage");
  device_ = info[0].As<Napi::Number>().Int32Value();
  const double bytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0) || bytes > double(SIZE_MAX / 2)) throw Napi::RangeError::New(env, "internal: bad byte count");
  bytes_ = size_t(bytes);

  if (info[2].IsTypedArray()) {
    wrapTypedArray(env, info[2].As<Napi::TypedArray>());
    return;
  }
  if (info[2].IsBigInt()) {  // wrap a user's device pointer
    bool lossless = true;
    const uint64_t ptr = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(env, "a device pointer must fit in 64 bits");
    data_ = reinterpret_cast<void *>(uintptr_t(ptr));
    owned_ = false;
    return;
  }
  const bool zeroFill = info[2].ToBoolean();
  const size_t allocBytes = roundUp(bytes_ == 0 ? 1 : bytes_, kHostAlignment);
  if (device_ == kHostDevice) {
    data_ = std::aligned_alloc(kHostAlignment, allocBytes);
    if (!data_)
      throwCoded(env, "ERR_OUT_OF_MEMORY", "out of host memory allocating " + std::to_string(bytes_) + " bytes");
    if (zeroFill || poisonAllocations()) std::memset(data_, zeroFill ? 0 : 0xff, allocBytes);
  } else {
    try {
      data_ = gpu::allocate(device_, allocBytes);
      if (zeroFill || poisonAllocations()) gpu::fillBytes(device_, data_, allocBytes, zeroFill ? 0 : 0xff);
    } catch (const gpu::Error &e) {
      if (data_) gpu::release(device_, data_);
      data_ = nullptr;
      throwCoded(env, e.code.c_str(), e.what());
    }
  }
  reportedBytes_ = int64_t(allocBytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
}

void Storage::wrapTypedArray(Napi::Env env, Napi::TypedArray array) {
  if (device_ != kHostDevice) throw Napi::TypeError::New(env, "internal: only host storage wraps a JavaScript array");
  Napi::Value buffer = array.ArrayBuffer();
  // Other threads write a SharedArrayBuffer while an op runs; a detached buffer has no memory.
  if (!buffer.IsArrayBuffer()) throw Napi::TypeError::New(env, "internal: the array must be over an ArrayBuffer");
  if (buffer.As<Napi::ArrayBuffer>().IsDetached()) throw Napi::TypeError::New(env, "internal: the array is detached");
  if (array.ByteLength() < bytes_) throw Napi::RangeError::New(env, "internal: the array is smaller than the storage");
  jsBuffer_ = Napi::Persistent(buffer.As<Napi::ArrayBuffer>());
  jsByteOffset_ = array.ByteOffset();
  data_ = static_cast<char *>(jsBuffer_.Value().Data()) + jsByteOffset_;
  owned_ = false;
}

bool Storage::disposed() const {
  if (disposed_) return true;
  if (jsBuffer_.IsEmpty()) return false;
  Napi::ArrayBuffer buffer = jsBuffer_.Value();
  return buffer.IsDetached() || buffer.ByteLength() < jsByteOffset_ + bytes_;
}

Storage::~Storage() {
  // Runs when the garbage collector has reclaimed the JavaScript object.
  if (owned_ && data_) {
    if (device_ == kHostDevice)
      std::free(data_);
    else
      gpu::release(device_, data_);
  }
  data_ = nullptr;
  if (reportedBytes_ != 0) {
    int64_t adjusted = 0;
    napi_adjust_external_memory(Env(), -reportedBytes_, &adjusted);
  }
}

void Storage::release() {
  if (disposed_) return;
  disposed_ = true;
  if (owned_ && data_) {
    if (device_ == kHostDevice)
      std::free(data_);
    else
      gpu::release(device_, data_);
    Napi::MemoryManagement::AdjustExternalMemory(Env(), -reportedBytes_);
    reportedBytes_ = 0;
  }
  jsBuffer_.Reset();
  data_ = nullptr;
}

Napi::Value Storage::Dispose(const Napi::CallbackInfo &info) {
  release();
  return info.Env().Undefined();
}

Napi::Value Storage::GetPointer(const Napi::CallbackInfo &info) {
  return Napi::BigInt::New(info.Env(), uint64_t(uintptr_t(data_)));
}

Napi::Value Storage::GetBytes(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), double(bytes_)); }

Napi::Value Storage::GetDevice(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), device_); }

}  // namespace ss
