// The descriptor of one op call: the plain object lib/ops/*.ts builds (its TypeScript type is in
// lib/native.ts) with sizes, flags, dtype codes, tensor storages and host index arrays.
//
// lib/ has checked every argument the user passed; what is checked again here is what memory
// safety needs, so that no descriptor can make a kernel read or write out of bounds: every storage
// is live, on the op's device, and covers the bytes its shape says (the product of its dimensions,
// counted with overflow checks); sizes are non-negative integers; index arrays are real
// Int32Arrays of the stated length. Fields are read from the object's own properties only, so
// that nothing on Object.prototype can stand in for a missing one. A violation is an internal error
// (a bug in lib/), never a user error.
#pragma once
#include <napi.h>

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <vector>

#include "../common/dtype.h"

namespace ss::op {

enum class Presence { Required, Optional };

// The dimensions of a tensor, e.g. {batch, dim, L}; their product is taken with overflow checks.
using Dims = std::initializer_list<int64_t>;

class Descriptor {
 public:
  // Reads info[0]: the descriptor object, with at least an integer `device` (-1: the host).
  explicit Descriptor(const Napi::CallbackInfo &info);

  Napi::Env env() const { return env_; }
  int device() const { return device_; }
  bool onHost() const;

  int64_t size(const char *key) const;   // a non-negative integer below 2^53
  bool flag(const char *key) const;      // a boolean
  double number(const char *key) const;  // any number (Infinity and NaN included)
  DType dtype(const char *key = "dtype") const;

  // The storage at `key`, holding at least the elements of type t that `dims` has; null when
  // absent and optional.
  template <class T = void>
  T *tensor(const char *key, Dims dims, DType t, Presence presence = Presence::Required) const {
    return static_cast<T *>(storageData(key, dims, t, presence));
  }
  float *floats(const char *key, Dims dims, Presence presence = Presence::Required) const {
    return tensor<float>(key, dims, DType::Float32, presence);
  }

  // An Int32Array of exactly `length` elements (absent and optional: null), copied, so that the op
  // sees a snapshot. A CUDA op reads it on the device: op::run stages it there and points *slot at
  // the device copy before the launch.
  void indices(const char *key, int64_t length, const int32_t **slot, Presence presence = Presence::Required);

  // The optional stateBatchIndices of a decoding step (selectiveStateUpdate, causalConv1dUpdate):
  // indices() of `batch` rows, each negative (padding) or a distinct row below `slots` of the state
  // the step writes in place, since rows are written in parallel. Absent, the state (named `state`
  // in the error) must have `batch` rows.
  void stateBatchIndices(int64_t batch, int64_t slots, const int32_t **slot, const char *state);

  // What op::run stages for a CUDA op: each slot and its host copy.
  struct IndexArray {
    const int32_t **slot;
    const std::vector<int32_t> *values;
  };
  const std::vector<IndexArray> &indexArrays() const { return indexArrays_; }

  std::string string(const char *key) const;  // a string
  // The object at `key`, read as a descriptor of the same device (e.g. a projection { kind, data }).
  Descriptor nested(const char *key) const;

 private:
  Descriptor(Napi::Env env, Napi::Object object, int device, napi_value keys)
      : env_(env), object_(object), device_(device), keys_(keys) {}
  Napi::Value field(const char *key) const;  // an own property, or undefined
  napi_value key(const char *name) const;    // the property name, made once per addon instance
  void *storageData(const char *key, Dims dims, DType t, Presence presence) const;

  Napi::Env env_;
  Napi::Object object_;
  int device_;
  napi_value keys_ = nullptr;                     // the addon instance's array of property names (descriptor.cc)
  std::deque<std::vector<int32_t>> indexCopies_;  // a deque: the copies never move
  std::vector<IndexArray> indexArrays_;
};

// elements * size in bytes, or an internal error when it overflows.
size_t checkedBytes(Napi::Env env, int64_t elements, int64_t elementSize, const char *what);

}  // namespace ss::op
