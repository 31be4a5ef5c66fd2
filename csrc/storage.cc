#include "storage.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "cpu/host_allocator.h"
#include "gpu.h"
#include "napi_errors.h"

// Experimental Node-API (Node 20.10 and later; the headers of node-api-headers leave it out):
// queues a finalizer to run after the garbage collection, where it may touch JavaScript.
#ifndef NODE_API_EXPERIMENTAL_HAS_POST_FINALIZER
extern "C" NAPI_EXTERN napi_status NAPI_CDECL node_api_post_finalizer(node_api_basic_env env, napi_finalize finalize_cb,
                                                                      void *finalize_data, void *finalize_hint);
#endif

namespace ss {

namespace {
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

// A Node-API callback of the class: a C++ exception becomes a JavaScript one (as `guarded` says).
template <Napi::Value (*F)(const Napi::CallbackInfo &)>
napi_value callback(napi_env env, napi_callback_info cbinfo) {
  try {
    Napi::CallbackInfo info(env, cbinfo);
    return guarded(info.Env(), [&] { return F(info); });
  } catch (const Napi::Error &e) {
    e.ThrowAsJavaScriptException();
    return nullptr;
  }
}
}  // namespace

Napi::Function Storage::Init(Napi::Env env) {
  const napi_property_descriptor properties[] = {
      {"dispose", nullptr, callback<&Storage::Dispose>, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"pointer", nullptr, nullptr, callback<&Storage::GetPointer>, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"bytes", nullptr, nullptr, callback<&Storage::GetBytes>, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"device", nullptr, nullptr, callback<&Storage::GetDevice>, nullptr, nullptr, napi_default_jsproperty, nullptr},
  };
  napi_value ctor;
  const napi_status status = napi_define_class(env, "Storage", NAPI_AUTO_LENGTH, Construct, nullptr,
                                               sizeof(properties) / sizeof(properties[0]), properties, &ctor);
  NAPI_THROW_IF_FAILED(env, status, Napi::Function());
  return Napi::Function(env, ctor);
}

napi_value Storage::Construct(napi_env env, napi_callback_info cbinfo) {
  try {
    Napi::CallbackInfo info(env, cbinfo);
    return guarded(info.Env(), [&]() -> napi_value {
      if (!info.IsConstructCall()) internalError(env, "Storage is a class");
      Storage *s = new Storage(env);
      try {
        s->initialize(info);
      } catch (...) {
        s->freeMemory(env);
        if (s->jsBuffer_) napi_delete_reference(env, s->jsBuffer_);
        delete s;
        throw;
      }
      // No reference comes back (the last argument): the runtime deletes its own after the
      // finalizer, which therefore need not (napi_delete_reference inside a collection is not
      // allowed on every Node version this package supports).
      if (napi_type_tag_object(env, info.This(), &kStorageTag) != napi_ok ||
          napi_wrap(env, info.This(), s, FinalizeInGC, nullptr, nullptr) != napi_ok) {
        s->freeMemory(env);
        if (s->jsBuffer_) napi_delete_reference(env, s->jsBuffer_);
        delete s;
        internalError(env, "cannot make a Storage");
      }
      return info.This();
    });
  } catch (const Napi::Error &e) {
    e.ThrowAsJavaScriptException();
    return nullptr;
  }
}

void Storage::initialize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  device_ = info[0].As<Napi::Number>().Int32Value();
  const double bytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0) || bytes > double(SIZE_MAX / 2)) throw Napi::RangeError::New(env, "internal: bad byte count");
  bytes_ = size_t(bytes);
  if (info[2].IsTypedArray()) {
    wrapTypedArray(env, info[2].As<Napi::TypedArray>());
  } else if (info[2].IsBigInt()) {  // wrap a user's device pointer
    bool lossless = true;
    const uint64_t ptr = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(env, "a device pointer must fit in 64 bits");
    data_ = reinterpret_cast<void *>(uintptr_t(ptr));
  } else {
    allocate(env, info[2].ToBoolean());
  }
}

void Storage::allocate(Napi::Env env, bool zeroFill) {
  if (device_ == kHostDevice) {
    cpu::HostBlock block;
    try {
      block = cpu::hostAllocate(bytes_ == 0 ? 1 : bytes_);
    } catch (const std::bad_alloc &) {
      throwCoded(env, "ERR_OUT_OF_MEMORY", "out of host memory allocating " + std::to_string(bytes_) + " bytes");
    }
    data_ = block.data;
    capacity_ = block.capacity;
    owned_ = true;
    // A block from the cache holds what its last tensor left there.
    if (zeroFill || poisonAllocations()) std::memset(data_, zeroFill ? 0 : 0xff, capacity_);
  } else {
    const size_t allocBytes = roundUp(bytes_ == 0 ? 1 : bytes_, cpu::kHostAlignment);
    try {
      data_ = gpu::allocate(device_, allocBytes);
      capacity_ = allocBytes;
      owned_ = true;
      if (zeroFill || poisonAllocations()) gpu::fillBytes(device_, data_, allocBytes, zeroFill ? 0 : 0xff);
    } catch (const gpu::Error &e) {
      freeMemory(env);
      throwCoded(env, e.code.c_str(), e.what());
    }
  }
  reportedBytes_ = int64_t(capacity_);
  Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
}

void Storage::wrapTypedArray(Napi::Env env, Napi::TypedArray array) {
  if (device_ != kHostDevice) throw Napi::TypeError::New(env, "internal: only host storage wraps a JavaScript array");
  Napi::Value buffer = array.ArrayBuffer();
  // Other threads write a SharedArrayBuffer while an op runs; a detached buffer has no memory.
  if (!buffer.IsArrayBuffer()) throw Napi::TypeError::New(env, "internal: the array must be over an ArrayBuffer");
  if (buffer.As<Napi::ArrayBuffer>().IsDetached()) throw Napi::TypeError::New(env, "internal: the array is detached");
  if (array.ByteLength() < bytes_) throw Napi::RangeError::New(env, "internal: the array is smaller than the storage");
  if (napi_create_reference(env, buffer, 1, &jsBuffer_) != napi_ok) internalError(env, "cannot reference the array");
  jsByteOffset_ = array.ByteOffset();
  data_ = static_cast<char *>(buffer.As<Napi::ArrayBuffer>().Data()) + jsByteOffset_;
}

Storage *Storage::FromValue(Napi::Value value, const char *what) {
  Napi::Env env = value.Env();
  bool tagged = false;
  if (!value.IsObject() || napi_check_object_type_tag(env, value, &kStorageTag, &tagged) != napi_ok || !tagged)
    internalError(env, std::string(what) + " is not a Storage");
  void *s = nullptr;
  if (napi_unwrap(env, value, &s) != napi_ok || !s) internalError(env, std::string(what) + " is not a Storage");
  return static_cast<Storage *>(s);
}

Storage *Storage::Unwrap(const Napi::CallbackInfo &info) { return FromValue(info.This(), "this"); }

bool Storage::disposed() const {
  if (disposed_) return true;
  if (!jsBuffer_) return false;
  napi_value value = nullptr;
  if (napi_get_reference_value(env_, jsBuffer_, &value) != napi_ok || !value) return true;
  Napi::ArrayBuffer buffer(env_, value);
  return buffer.IsDetached() || buffer.ByteLength() < jsByteOffset_ + bytes_;
}

void Storage::freeMemory(node_api_basic_env env) noexcept {
  if (owned_ && data_) {
    if (device_ == kHostDevice)
      cpu::hostRelease({data_, capacity_});
    else
      gpu::release(device_, data_);
  }
  owned_ = false;
  data_ = nullptr;
  if (reportedBytes_ != 0) {
    int64_t adjusted = 0;
    napi_adjust_external_memory(env, -reportedBytes_, &adjusted);
    reportedBytes_ = 0;
  }
}

Storage::~Storage() = default;

// Runs inside the garbage collection that reclaimed the JavaScript object (Node runs finalizers of
// an addon of the experimental Node-API version there): frees the memory at once. Deleting the
// reference to a wrapped array's buffer is left for after the collection.
void Storage::FinalizeInGC(node_api_basic_env env, void *data, void *) {
  Storage *s = static_cast<Storage *>(data);
  s->freeMemory(env);
  if (s->jsBuffer_ == nullptr || node_api_post_finalizer(env, DeleteAfterGC, s, nullptr) != napi_ok) delete s;
}

void Storage::DeleteAfterGC(napi_env env, void *data, void *) {
  Storage *s = static_cast<Storage *>(data);
  napi_delete_reference(env, s->jsBuffer_);
  delete s;
}

Napi::Value Storage::Dispose(const Napi::CallbackInfo &info) {
  Storage *s = Unwrap(info);
  if (!s->disposed_) {
    s->disposed_ = true;
    s->freeMemory(info.Env());
    if (s->jsBuffer_) napi_delete_reference(info.Env(), s->jsBuffer_);
    s->jsBuffer_ = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value Storage::GetPointer(const Napi::CallbackInfo &info) {
  return Napi::BigInt::New(info.Env(), uint64_t(uintptr_t(Unwrap(info)->data_)));
}

Napi::Value Storage::GetBytes(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), double(Unwrap(info)->bytes_));
}

Napi::Value Storage::GetDevice(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), Unwrap(info)->device_);
}

}  // namespace ss
