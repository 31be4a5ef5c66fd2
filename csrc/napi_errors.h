// How C++ failures become JavaScript errors, in one place: Errors with a stable `code` (the codes of
// lib/errors.ts), and internal errors (a descriptor from lib/ that breaks its contract: a bug).
// Every registered native function runs inside `guarded` (op/registry.cc), so no C++ exception
// reaches Node-API unconverted (which would end the process).
#pragma once
#include <napi.h>

#include <new>
#include <string>

#include "gpu.h"

namespace ss {

// Throws an Error with a stable `code` property (ERR_DISPOSED, ERR_CUDA, ...).
[[noreturn]] inline void throwCoded(Napi::Env env, const char *code, const std::string &message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

[[noreturn]] inline void internalError(Napi::Env env, const std::string &message) {
  throw Napi::Error::New(env, "selective-scan internal error: " + message);
}

// Runs f, turning a gpu::Error into an Error with its code, a failed host allocation into
// ERR_OUT_OF_MEMORY, and any other C++ exception into an internal error.
template <class F>
auto guarded(Napi::Env env, F &&f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error &) {
    throw;  // already a JavaScript error
  } catch (const gpu::Error &e) {
    throwCoded(env, e.code.c_str(), e.what());
  } catch (const std::bad_alloc &) {
    throwCoded(env, "ERR_OUT_OF_MEMORY", "out of host memory");
  } catch (const std::exception &e) {
    internalError(env, e.what());
  }
}

}  // namespace ss
