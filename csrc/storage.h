// Storage: the bytes behind a Tensor, on the host or on one GPU, wrapped for JavaScript.
//
// A Storage owns its memory (freed by dispose() or by the garbage collector, and reported to V8 as
// external memory) unless it wraps a device pointer that a user handed in (fromDevicePointer),
// which is never freed, or the memory of a JavaScript typed array (host only), whose buffer it
// keeps alive by a reference. Host memory is 64-byte aligned for the CPU backend's vector loads;
// a wrapped array is 4-byte aligned, which the kernels allow (they load tensors unaligned).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace ss {

constexpr int kHostDevice = -1;

class Storage : public Napi::ObjectWrap<Storage> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Storage *FromValue(Napi::Value value, const char *what);  // throws a TypeError if not a Storage

  // new Storage(device, bytes, zeroFill) allocates; new Storage(device, bytes, pointer: bigint)
  // wraps memory owned elsewhere (never freed here); new Storage(-1, bytes, typedArray) wraps the
  // array's memory (its first `bytes` bytes).
  explicit Storage(const Napi::CallbackInfo &info);
  ~Storage() override;

  int device() const { return device_; }
  size_t bytes() const { return bytes_; }
  // Also true once a wrapped JavaScript buffer no longer holds the bytes (detached or shrunk): an
  // op checks this when it starts and keeps the JavaScript thread until it returns.
  bool disposed() const;
  void *data() const { return data_; }
  bool onHost() const { return device_ == kHostDevice; }

 private:
  Napi::Value Dispose(const Napi::CallbackInfo &info);
  Napi::Value GetPointer(const Napi::CallbackInfo &info);
  Napi::Value GetBytes(const Napi::CallbackInfo &info);
  Napi::Value GetDevice(const Napi::CallbackInfo &info);
  void release();
  void wrapTypedArray(Napi::Env env, Napi::TypedArray array);

  int device_ = kHostDevice;
  size_t bytes_ = 0;
  void *data_ = nullptr;
  bool owned_ = true;
  bool disposed_ = false;
  int64_t reportedBytes_ = 0;                    // external memory reported to V8
  Napi::Reference<Napi::ArrayBuffer> jsBuffer_;  // the wrapped JavaScript array's buffer, if any
  size_t jsByteOffset_ = 0;                      // where the array starts in it
};

}  // namespace ss
