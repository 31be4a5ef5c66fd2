// The native module. Its functions are registered next to their code, one line each (op/registry.h):
// the ops in csrc/ops/<op>/<op>_binding.cc, tensor contents in tensor_data.cc, the backends in
// backend_binding.cc. lib/native.ts types them; lib/ checks every user argument before calling one.
#include <napi.h>

#include "op/registry.h"
#include "storage.h"

static Napi::Object InitSelectiveScan(Napi::Env env, Napi::Object exports) {
  exports.Set("Storage", ss::Storage::Init(env));
  ss::op::exportAll(env, exports);
  return exports;
}

NODE_API_MODULE(selective_scan, InitSelectiveScan)
