#include "descriptor.h"

#include <string>

#include "../napi_errors.h"
#include "../storage.h"

namespace ss::op {

namespace {
constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1
}

size_t checkedBytes(Napi::Env env, int64_t elements, int64_t elementSize, const char *what) {
  int64_t bytes = 0;
  if (elements < 0 || __builtin_mul_overflow(elements, elementSize, &bytes))
    internalError(env, std::string(what) + ": byte count overflows");
  return size_t(bytes);
}

Descriptor::Descriptor(const Napi::CallbackInfo &info) : env_(info.Env()), device_(kHostDevice) {
  if (info.Length() < 1 || !info[0].IsObject()) internalError(env_, "an op takes one descriptor object");
  object_ = info[0].As<Napi::Object>();
  const Napi::Value device = field("device");
  if (!device.IsNumber()) internalError(env_, "descriptor field device missing");
  const double value = device.As<Napi::Number>().DoubleValue();
  if (!(value >= -1 && value < 1 << 16) || value != double(int(value))) internalError(env_, "bad device index");
  device_ = int(value);
}

bool Descriptor::onHost() const { return device_ == kHostDevice; }

Napi::Value Descriptor::field(const char *key) const {
  return object_.HasOwnProperty(key) ? object_.Get(key) : env_.Undefined();
}

int64_t Descriptor::size(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsNumber()) internalError(env_, std::string("descriptor field ") + key + " missing");
  const double value = v.As<Napi::Number>().DoubleValue();
  if (!(value >= 0 && value <= kMaxSafeInteger) || value != double(int64_t(value)))
    internalError(env_, std::string("descriptor field ") + key + " is not a size");
  return int64_t(value);
}

double Descriptor::number(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsNumber()) internalError(env_, std::string("descriptor field ") + key + " is not a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool Descriptor::flag(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsBoolean()) internalError(env_, std::string("descriptor field ") + key + " is not a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Descriptor::string(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsString()) internalError(env_, std::string("descriptor field ") + key + " is not a string");
  return v.As<Napi::String>().Utf8Value();
}

Descriptor Descriptor::nested(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsObject()) internalError(env_, std::string("descriptor field ") + key + " is not an object");
  return Descriptor(env_, v.As<Napi::Object>(), device_);
}

DType Descriptor::dtype(const char *key) const {
  const int64_t code = size(key);
  if (code > int64_t(DType::BFloat16)) internalError(env_, std::string("descriptor field ") + key + ": bad dtype code");
  return DType(code);
}

void *Descriptor::storageData(const char *key, Dims dims, DType t, Presence presence) const {
  const Napi::Value v = field(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (presence == Presence::Required) internalError(env_, std::string("descriptor field ") + key + " missing");
    return nullptr;
  }
  Storage *s = Storage::FromValue(v, key);
  if (s->disposed()) throwCoded(env_, "ERR_DISPOSED", std::string(key) + " was disposed");
  if (s->device() != device_) internalError(env_, std::string(key) + " is on another device");
  int64_t elements = 1;
  for (const int64_t n : dims)
    if (n < 0 || __builtin_mul_overflow(elements, n, &elements))
      internalError(env_, std::string(key) + ": element count overflows");
  if (s->bytes() < checkedBytes(env_, elements, dtypeSize(t), key))
    internalError(env_, std::string(key) + " is smaller than its shape");
  return s->data();
}

void Descriptor::indices(const char *key, int64_t length, const int32_t **slot, Presence presence) {
  *slot = nullptr;
  const Napi::Value v = field(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (presence == Presence::Required) internalError(env_, std::string("descriptor field ") + key + " missing");
    return;
  }
  // The real type and length of the view, whatever its prototype says.
  napi_typedarray_type type;
  size_t count = 0;
  void *data = nullptr;
  if (!v.IsTypedArray() || napi_get_typedarray_info(env_, v, &type, &count, &data, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array)
    internalError(env_, std::string(key) + " is not an Int32Array");
  if (int64_t(count) != length) internalError(env_, std::string(key) + " has the wrong length");
  const int32_t *values = static_cast<const int32_t *>(data);
  indexCopies_.emplace_back(values, values + count);
  *slot = indexCopies_.back().data();
  indexArrays_.push_back({slot, &indexCopies_.back()});
}

void Descriptor::stateBatchIndices(int64_t batch, int64_t slots, const int32_t **slot, const char *state) {
  indices("stateBatchIndices", batch, slot, Presence::Optional);
  if (!*slot) {
    if (slots != batch) internalError(env_, std::string(state) + " has another row count than x");
    return;
  }
  // lib/ checked the user's array; this copy is what the kernel reads.
  std::vector<bool> used(size_t(slots), false);
  for (int64_t i = 0; i < batch; ++i) {
    const int32_t row = (*slot)[i];
    if (row < 0) continue;
    if (row >= slots || used[size_t(row)]) internalError(env_, "stateBatchIndices out of range or repeated");
    used[size_t(row)] = true;
  }
}

}  // namespace ss::op
