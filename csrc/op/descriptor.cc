#include "descriptor.h"

#include <string>
#include <unordered_map>
#include <vector>

#include "../napi_errors.h"
#include "../storage.h"

namespace ss::op {

namespace {
constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

// The names of descriptor fields as JavaScript strings, made once per addon instance (a Node-API
// environment: the main thread and each worker have their own) and kept in a JavaScript array
// that one reference holds. Making them anew for every read (napi_create_string_utf8, then V8
// hashing and internalizing the new string, twice per field) was most of the addon's cost of a
// small op call: about 9 us of a decoding step's 10 (bench/call-overhead.mjs).
class PropertyKeys {
 public:
  static PropertyKeys &of(Napi::Env env) {
    PropertyKeys *keys = env.GetInstanceData<PropertyKeys>();
    if (!keys) {
      keys = new PropertyKeys();
      napi_value array = nullptr;
      if (napi_create_array(env, &array) != napi_ok || napi_create_reference(env, array, 1, &keys->array_) != napi_ok) {
        delete keys;
        internalError(env, "cannot make the descriptor keys");
      }
      env.SetInstanceData<PropertyKeys, &PropertyKeys::finalize>(keys);
    }
    return *keys;
  }

  napi_value array(Napi::Env env) const {
    napi_value array = nullptr;
    if (napi_get_reference_value(env, array_, &array) != napi_ok || !array)
      internalError(env, "the descriptor keys are gone");
    return array;
  }

  // The index of `name` in the array (added on first use). Keyed by the address of the caller's
  // string (the field names are literals) and checked against the name itself, so that another
  // string at a reused address still finds its own entry.
  uint32_t index(Napi::Env env, napi_value array, const char *name) {
    const auto hit = byAddress_.find(name);
    if (hit != byAddress_.end() && names_[hit->second] == name) return hit->second;
    auto [entry, added] = byName_.try_emplace(name, uint32_t(names_.size()));
    if (added) {
      napi_value key = nullptr;
      if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &key) != napi_ok ||
          napi_set_element(env, array, entry->second, key) != napi_ok) {
        byName_.erase(entry);
        internalError(env, "cannot make a descriptor key");
      }
      names_.emplace_back(name);
    }
    byAddress_[name] = entry->second;
    return entry->second;
  }

 private:
  // Deletes the reference at the end of the environment; Node-API allows that from an instance
  // data finalizer (it runs before Node frees the environment's remaining references).
  static void finalize(Napi::Env env, PropertyKeys *keys) {
    if (keys->array_) napi_delete_reference(env, keys->array_);
    delete keys;
  }

  napi_ref array_ = nullptr;
  std::vector<std::string> names_;
  std::unordered_map<std::string, uint32_t> byName_;
  std::unordered_map<const char *, uint32_t> byAddress_;
};
}  // namespace

size_t checkedBytes(Napi::Env env, int64_t elements, int64_t elementSize, const char *what) {
  int64_t bytes = 0;
  if (elements < 0 || __builtin_mul_overflow(elements, elementSize, &bytes))
    internalError(env, std::string(what) + ": byte count overflows");
  return size_t(bytes);
}

Descriptor::Descriptor(const Napi::CallbackInfo &info) : env_(info.Env()), device_(kHostDevice) {
  if (info.Length() < 1 || !info[0].IsObject()) internalError(env_, "an op takes one descriptor object");
  object_ = info[0].As<Napi::Object>();
  keys_ = PropertyKeys::of(env_).array(env_);
  const Napi::Value device = field("device");
  if (!device.IsNumber()) internalError(env_, "descriptor field device missing");
  const double value = device.As<Napi::Number>().DoubleValue();
  if (!(value >= -1 && value < 1 << 16) || value != double(int(value))) internalError(env_, "bad device index");
  device_ = int(value);
}

bool Descriptor::onHost() const { return device_ == kHostDevice; }

napi_value Descriptor::key(const char *name) const {
  napi_value key = nullptr;
  if (napi_get_element(env_, keys_, PropertyKeys::of(env_).index(env_, keys_, name), &key) != napi_ok || !key)
    internalError(env_, std::string("cannot read the descriptor key ") + name);
  return key;
}

// Own properties only, checked before reading: a getter that a program put on Object.prototype
// for a field that a descriptor leaves out is never run (it could dispose a tensor read earlier).
Napi::Value Descriptor::field(const char *name) const {
  const napi_value key = this->key(name);
  bool own = false;
  if (napi_has_own_property(env_, object_, key, &own) != napi_ok) throw Napi::Error::New(env_);
  if (!own) return env_.Undefined();
  napi_value value = nullptr;
  if (napi_get_property(env_, object_, key, &value) != napi_ok) throw Napi::Error::New(env_);
  return Napi::Value(env_, value);
}

// The typed reads below check the type in the same Node-API call that reads the value (a number
// or a boolean primitive, as IsNumber and IsBoolean): one call fewer per field.
int64_t Descriptor::size(const char *key) const {
  double value = 0;
  if (napi_get_value_double(env_, field(key), &value) != napi_ok)
    internalError(env_, std::string("descriptor field ") + key + " missing");
  if (!(value >= 0 && value <= kMaxSafeInteger) || value != double(int64_t(value)))
    internalError(env_, std::string("descriptor field ") + key + " is not a size");
  return int64_t(value);
}

double Descriptor::number(const char *key) const {
  double value = 0;
  if (napi_get_value_double(env_, field(key), &value) != napi_ok)
    internalError(env_, std::string("descriptor field ") + key + " is not a number");
  return value;
}

bool Descriptor::flag(const char *key) const {
  bool value = false;
  if (napi_get_value_bool(env_, field(key), &value) != napi_ok)
    internalError(env_, std::string("descriptor field ") + key + " is not a boolean");
  return value;
}

std::string Descriptor::string(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsString()) internalError(env_, std::string("descriptor field ") + key + " is not a string");
  return v.As<Napi::String>().Utf8Value();
}

Descriptor Descriptor::nested(const char *key) const {
  const Napi::Value v = field(key);
  if (!v.IsObject()) internalError(env_, std::string("descriptor field ") + key + " is not an object");
  return Descriptor(env_, v.As<Napi::Object>(), device_, keys_);
}

DType Descriptor::dtype(const char *key) const {
  const int64_t code = size(key);
  if (code > int64_t(DType::BFloat16)) internalError(env_, std::string("descriptor field ") + key + ": bad dtype code");
  return DType(code);
}

void *Descriptor::storageData(const char *key, Dims dims, DType t, Presence presence) const {
  const Napi::Value v = field(key);
  napi_valuetype type = napi_undefined;
  if (napi_typeof(env_, v, &type) != napi_ok)
    internalError(env_, std::string("descriptor field ") + key + " unreadable");
  if (type == napi_undefined || type == napi_null) {
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
