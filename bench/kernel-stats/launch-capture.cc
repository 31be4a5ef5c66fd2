// Runs the host side of the CUDA ops for the benchmark cases and prints what they launch (with
// cudart-stub.cc in place of the CUDA runtime, no GPU is needed or touched). For each case:
//   {"type":"case",...}, one {"type":"buffer",...} per tensor (a made-up device address, its size,
//   dtype and how kernel-stats fills it for the simulator), the stub's {"type":"launch"|"alloc"|
//   "memset",...} lines, then {"type":"done","status":N}.
//
//   launch-capture CASE...   CASE = OP:DTYPE:SIZES
//     OP fwd | fwd-save | bwd | bwd-det   SIZES = BATCHxDIMxLxN (input-dependent B, C (batch, N, L),
//                                          z, D, deltaSoftplus; as bench/bench.mjs)
//     OP train                             fwd-save, then bwd on its checkpoints (the same buffers)
//     OP step-channels                     SIZES = BATCHxDIMxN (state (batch, dim, N), B/C (batch, N))
//     OP step-heads                        SIZES = BATCHxHxPxN (A, dt, dtBias per head, B/C (batch, 1, N))
//     DTYPE f32 | f16 | bf16
//
// This is the one file that calls the ops' C++ entry points: it follows their signatures when they
// change. Two layouts are known: the ops under csrc/ops/<op>/ (scan.h, state_update.h) and the
// earlier csrc/cuda/cuda_ops.h.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#if __has_include("ops/selective_scan/scan.h")
#include "ops/selective_scan/scan.h"
#include "ops/state_update/state_update.h"
#define SS_OPS_LAYOUT 1
#else
#include "cuda/cuda_ops.h"
#endif

namespace {

using ss::DType;

// The layouts' differences: an input-dependent projection, the checkpoint interval.
#if defined(SS_OPS_LAYOUT)
ss::Projection varying(const void *data) { return ss::Projection::varyingGroups(data, 1); }
int64_t checkpointInterval(const ss::ScanShape &s) { return ss::cuda::scanChunkLength(s); }
#else
ss::Projection varying(const void *data) { return {data, 1}; }
int64_t checkpointInterval(const ss::ScanShape &s) { return ss::cuda::forwardChunkLength(s); }
#endif

uint64_t nextAddress = 0x100000000000ull;

// A made-up device buffer, announced to kernel-stats with the distribution to fill it with.
void *buffer(const char *name, int64_t elements, DType dtype, const char *fill) {
  const uint64_t bytes = uint64_t(elements) * uint64_t(ss::dtypeSize(dtype));
  const uint64_t at = nextAddress;
  nextAddress += (bytes + 0xfffff) & ~uint64_t(0xfffff);  // 1 MiB apart
  const char *type = dtype == DType::Float32 ? "float32" : dtype == DType::Float16 ? "float16" : "bfloat16";
  std::printf(
      "{\"type\":\"buffer\",\"name\":\"%s\",\"address\":%llu,\"bytes\":%llu,\"dtype\":\"%s\",\"fill\":\"%s\"}\n", name,
      static_cast<unsigned long long>(at), static_cast<unsigned long long>(bytes), type, fill);
  return reinterpret_cast<void *>(at);
}
float *floats(const char *name, int64_t elements, const char *fill) {
  return static_cast<float *>(buffer(name, elements, DType::Float32, fill));
}

std::vector<int64_t> sizes(const std::string &text) {
  std::vector<int64_t> out;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, 'x');) out.push_back(std::atoll(part.c_str()));
  return out;
}

// The forward's inputs as bench.mjs passes them: u, delta, z, out in the dtype; A, D float32;
// B and C input-dependent (batch, 1, N, L); deltaSoftplus.
ss::ScanForwardParams scanInputs(DType dtype, const std::vector<int64_t> &s, bool saveCheckpoints) {
  ss::ScanForwardParams p;
  p.shape = {s[0], s[1], s[2], s[3]};
  p.dtype = dtype;
  const int64_t rows = s[0] * s[1] * s[2], projection = s[0] * s[3] * s[2];
  p.u = buffer("u", rows, dtype, "normal");
  p.delta = buffer("delta", rows, dtype, "delta");
  p.z = buffer("z", rows, dtype, "normal");
  p.A = floats("A", s[1] * s[3], "negexp");
  p.B = varying(buffer("B", projection, dtype, "normal"));
  p.C = varying(buffer("C", projection, dtype, "normal"));
  p.D = floats("D", s[1], "normal");
  p.deltaSoftplus = true;
  p.out = buffer("out", rows, dtype, "zero");
  p.chunkLength = checkpointInterval(p.shape);
  if (saveCheckpoints) {
    const int64_t chunks = (s[2] + p.chunkLength - 1) / p.chunkLength;
    p.checkpoints = floats("checkpoints", s[0] * s[1] * chunks * s[3], "normal");
  }
  return p;
}

int runCase(const std::string &op, DType dtype, const std::vector<int64_t> &s) {
  if ((op == "fwd" || op == "fwd-save") && s.size() == 4) {
    return int(ss::cuda::scanForward(scanInputs(dtype, s, op == "fwd-save"), nullptr));
  }
  if ((op == "bwd" || op == "bwd-det" || op == "train") && s.size() == 4) {
    ss::ScanBackwardParams b;
    b.fwd = scanInputs(dtype, s, true);
    if (op == "train") {
      const int forward = int(ss::cuda::scanForward(b.fwd, nullptr));
      if (forward != 0) return forward;
    }
    const int64_t rows = s[0] * s[1] * s[2], projection = s[0] * s[3] * s[2];
    b.dout = buffer("dout", rows, dtype, "normal");
    b.deterministic = op == "bwd-det";
    b.du = buffer("du", rows, dtype, "zero");
    b.ddelta = buffer("ddelta", rows, dtype, "zero");
    b.dz = buffer("dz", rows, dtype, "zero");
    b.dA = floats("dA", s[1] * s[3], "zero");
    b.dB = buffer("dB", projection, dtype, "zero");
    b.dC = buffer("dC", projection, dtype, "zero");
    b.dD = floats("dD", s[1], "zero");
    return int(ss::cuda::scanBackward(b, nullptr));
  }
  if ((op == "step-channels" && s.size() == 3) || (op == "step-heads" && s.size() == 4)) {
    // As bench.mjs: channels = heads of size 1 with A (dim, N); heads: A, dt, dtBias per head.
    const bool heads = op == "step-heads";
    ss::StateUpdateParams p;
    p.batch = s[0];
    p.heads = s[1];
    p.headDim = heads ? s[2] : 1;
    p.dstate = s.back();
    p.stateSlots = p.batch;
    p.dtype = dtype;
    p.scalarPerHead = heads;
    const int64_t rows = p.batch * p.heads * p.headDim;
    p.state = floats("state", rows * p.dstate, "zero");
    p.x = buffer("x", rows, dtype, "normal");
    p.dt = buffer("dt", heads ? p.batch * p.heads : rows, dtype, "delta");
    p.z = buffer("z", rows, dtype, "normal");
    p.B = buffer("B", p.batch * p.dstate, dtype, "normal");
    p.C = buffer("C", p.batch * p.dstate, dtype, "normal");
    p.A = floats("A", heads ? p.heads : rows / p.batch * p.dstate, "negexp");
    p.D = floats("D", p.heads * (heads ? 1 : p.headDim), "normal");
    if (heads) p.dtBias = floats("dtBias", p.heads, "negexp");
    p.dStrideHead = heads ? 1 : p.headDim;
    p.dStrideP = heads ? 0 : 1;
    p.dtSoftplus = true;
    p.y = buffer("y", rows, dtype, "zero");
    return int(ss::cuda::stateUpdate(p, nullptr));
  }
  std::fprintf(stderr, "launch-capture: unknown case %s with %zu sizes\n", op.c_str(), s.size());
  std::exit(2);
}

}  // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string spec = argv[i];
    const size_t a = spec.find(':'), b = spec.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) {
      std::fprintf(stderr, "launch-capture: expected OP:DTYPE:SIZES, got %s\n", spec.c_str());
      return 2;
    }
    const std::string op = spec.substr(0, a), dtypeName = spec.substr(a + 1, b - a - 1);
    const DType dtype = dtypeName == "f32" ? DType::Float32 : dtypeName == "f16" ? DType::Float16 : DType::BFloat16;
    std::printf("{\"type\":\"case\",\"case\":\"%s\"}\n", spec.c_str());
    const int status = runCase(op, dtype, sizes(spec.substr(b + 1)));
    std::printf("{\"type\":\"done\",\"status\":%d}\n", status);
  }
  return 0;
}
