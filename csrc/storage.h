// Storage: the bytes behind a Tensor, on the host or on one GPU, wrapped for JavaScript.
//
// A Storage owns its memory unless it wraps a device pointer that a user handed in
// (fromDevicePointer), which is never freed, or the memory of a JavaScript typed array (host
// only), whose buffer it keeps alive by a reference. Owned memory is reported to V8 as external
// memory (so that a program that never disposes its tensors makes the garbage collector run) and
// freed by dispose() at once, or by the garbage collector: the finalizer touches no JavaScript, so
// Node runs it inside the collection, without waiting for the event loop (a synchronous training
// loop never yields to it). Host memory comes from the caching allocator (cpu/host_allocator.h),
// 64-byte aligned for the CPU backend's vector loads; a wrapped array is 4-byte aligned, which the
// kernels allow (they load tensors unaligned).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace ss {

constexpr int kHostDevice = -1;

class Storage {
 public:
  // The JavaScript class: new Storage(device, bytes, zeroFill) allocates; new Storage(device,
  // bytes, pointer: bigint) wraps memory owned elsewhere (never freed here); new Storage(-1, bytes,
  // typedArray) wraps the array's memory (its first `bytes` bytes).
  static Napi::Function Init(Napi::Env env);
  static Storage *FromValue(Napi::Value value, const char *what);  // throws a TypeError if not a Storage

  int device() const { return device_; }
  size_t bytes() const { return bytes_; }
  // Also true once a wrapped JavaScript buffer no longer holds the bytes (detached or shrunk): an
  // op checks this when it starts and keeps the JavaScript thread until it returns.
  bool disposed() const;
  void *data() const { return data_; }
  bool onHost() const { return device_ == kHostDevice; }

 private:
  explicit Storage(napi_env env) : env_(env) {}
  ~Storage();
  Storage(const Storage &) = delete;
  Storage &operator=(const Storage &) = delete;

  static napi_value Construct(napi_env env, napi_callback_info info);
  static void FinalizeInGC(node_api_basic_env env, void *data, void *hint);
  static void DeleteAfterGC(napi_env env, void *data, void *hint);
  static Storage *Unwrap(const Napi::CallbackInfo &info);
  static Napi::Value Dispose(const Napi::CallbackInfo &info);
  static Napi::Value GetPointer(const Napi::CallbackInfo &info);
  static Napi::Value GetBytes(const Napi::CallbackInfo &info);
  static Napi::Value GetDevice(const Napi::CallbackInfo &info);

  void initialize(const Napi::CallbackInfo &info);
  void allocate(Napi::Env env, bool zeroFill);
  void wrapTypedArray(Napi::Env env, Napi::TypedArray array);
  // Frees owned memory and takes back what was reported to V8; no JavaScript is touched.
  void freeMemory(node_api_basic_env env) noexcept;

  napi_env env_;
  int device_ = kHostDevice;
  size_t bytes_ = 0;
  void *data_ = nullptr;
  size_t capacity_ = 0;  // the bytes of the owned allocation (a host size class, or rounded up)
  bool owned_ = false;
  bool disposed_ = false;
  int64_t reportedBytes_ = 0;    // external memory reported to V8
  napi_ref jsBuffer_ = nullptr;  // the wrapped JavaScript array's buffer, if any
  size_t jsByteOffset_ = 0;      // where the array starts in it
};

}  // namespace ss
