#include "registry.h"

#include "../napi_errors.h"

#include <string>
#include <utility>
#include <vector>

namespace ss::op {

namespace {
std::vector<std::pair<const char *, NativeFunction>> &registered() {
  static std::vector<std::pair<const char *, NativeFunction>> functions;  // built while the addon loads
  return functions;
}
}  // namespace

Registration::Registration(const char *name, NativeFunction fn) { registered().emplace_back(name, fn); }

void exportAll(Napi::Env env, Napi::Object exports) {
  for (const auto &[name, fn] : registered()) {
    const NativeFunction call = fn;
    exports.Set(
        name,
        Napi::Function::New(
            env, [call](const Napi::CallbackInfo &info) { return guarded(info.Env(), [&] { return call(info); }); },
            name));
  }
}

void noCudaBackend(const char *publicName) {
  throw gpu::Error("ERR_CUDA_UNAVAILABLE",
                   std::string(publicName) + " has no CUDA implementation yet; run it on the CPU");
}

StagedIndices::StagedIndices(const Descriptor &d) : device_(d.device()) {
  try {
    for (const auto &array : d.indexArrays()) {
      const size_t bytes = array.values->size() * sizeof(int32_t);
      if (bytes == 0) continue;
      void *buffer = gpu::allocate(device_, bytes);
      buffers_.push_back(buffer);
      gpu::upload(device_, buffer, array.values->data(), bytes);
      *array.slot = static_cast<const int32_t *>(buffer);
    }
  } catch (...) {
    for (void *buffer : buffers_) gpu::release(device_, buffer);
    throw;
  }
}

StagedIndices::~StagedIndices() {
  for (void *buffer : buffers_) gpu::release(device_, buffer);
}

}  // namespace ss::op
