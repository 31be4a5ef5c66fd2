// The kernel emulation test: runs the CUDA backend's ops (csrc/cuda, through cuda_ops.h) on the
// emulator and compares them with the CPU backend (the oracle) on random inputs over the option
// space. One JSON line per case on stdout:
//   {"group": ..., "name": ..., "pass": bool, "ms": ..., "checks": [{"what", "pass", "rel",
//    "elem", "tol", "tolElem", "detail"}...], "faults": [...]}
// and a final {"summary": ...} line. Exit status 0 when every case passed.
//
// What a scan case checks:
//  - forward: out and lastState against the CPU backend (||got - ref|| / ||ref|| within
//    KERNELS.md's tolerance for the element type, and every element within a looser bound scaled
//    by max(|ref_i|, rms(ref)), so that a few wrong elements cannot hide in a long tensor); NaN
//    anywhere fails (outputs start as NaN, so an element never written fails too);
//  - the forward again under another schedule (threads and blocks in reverse order, one warp at a
//    time; see emu.h): the same bits, checkpoints included;
//  - backward, default mode, against the CPU backend: every gradient;
//  - backward, deterministic mode, against the CPU backend, and again under a random schedule:
//    the same bits (deterministic means independent of the order blocks run in);
//  - default and deterministic agree bit for bit on every gradient that does not go through float
//    atomics (all but the input-dependent dB / dC);
//  - no fault of the emulator (launch rejected, misaligned load, divergent collective, deadlock,
//    write outside an allocation or its shared memory), no error returned, no scratch leaked.
// A step case runs two updates in a row on both backends and compares y and the whole state
// buffer; rows of padding must give y = 0 and slots no row names must keep their bits.
//
//   emulate [--filter TEXT] [--list] [--shard I/N]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/scan_params.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_ops.h"
#include "selftest.h"

using namespace ss;

namespace {

// ---- Random numbers (splitmix64; Box-Muller) ---------------------------------------------------------

struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ULL + 1) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

const char *dtypeName(DType t) {
  return t == DType::Float32 ? "float32" : t == DType::Float16 ? "float16" : "bfloat16";
}

// ---- Tensors ------------------------------------------------------------------------------------------

// Values stored in a dtype, on the host. n == 0 stands for "not given".
struct HostTensor {
  DType dtype = DType::Float32;
  int64_t n = 0;
  std::vector<unsigned char> bytes;

  static HostTensor poisoned(DType t, int64_t n) {  // what an output holds before an op writes it
    HostTensor h;
    h.dtype = t;
    h.n = n;
    h.bytes.resize(size_t(n) * size_t(dtypeSize(t)));
    for (size_t i = 0; i + 4 <= h.bytes.size(); i += 4) std::memcpy(&h.bytes[i], &emu::kPoisonWord, 4);
    if (h.bytes.size() % 4) std::memcpy(&h.bytes[h.bytes.size() - 2], &emu::kPoisonWord, 2);
    return h;
  }
  static HostTensor of(const std::vector<float> &values, DType t) {  // rounded to t
    HostTensor h;
    h.dtype = t;
    h.n = int64_t(values.size());
    h.bytes.resize(values.size() * size_t(dtypeSize(t)));
    for (size_t i = 0; i < values.size(); ++i) {
      if (t == DType::Float32) {
        std::memcpy(&h.bytes[4 * i], &values[i], 4);
      } else {
        const uint16_t bits = t == DType::Float16 ? floatToHalf(values[i]) : floatToBfloat16(values[i]);
        std::memcpy(&h.bytes[2 * i], &bits, 2);
      }
    }
    return h;
  }
  bool given() const { return n > 0; }
  void *data() { return given() ? bytes.data() : nullptr; }
  const void *data() const { return given() ? bytes.data() : nullptr; }
  float *floats() { return given() ? reinterpret_cast<float *>(bytes.data()) : nullptr; }
  const float *floats() const { return given() ? reinterpret_cast<const float *>(bytes.data()) : nullptr; }
  float at(int64_t i) const {
    if (dtype == DType::Float32) {
      float v;
      std::memcpy(&v, &bytes[size_t(i) * 4], 4);
      return v;
    }
    uint16_t b;
    std::memcpy(&b, &bytes[size_t(i) * 2], 2);
    return dtype == DType::Float16 ? halfToFloat(b) : bfloat16ToFloat(b);
  }
};

// Emulated device memory (guarded, NaN-filled; see emu.h), freed at scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DType t, int64_t n) : dtype_(t), n_(n), p_(emu::allocate(size_t(n) * size_t(dtypeSize(t)))) {}
  static DeviceBuffer upload(const HostTensor &h) {
    DeviceBuffer d;
    if (!h.given()) return d;
    d = DeviceBuffer(h.dtype, h.n);
    std::memcpy(d.p_, h.bytes.data(), h.bytes.size());
    return d;
  }
  DeviceBuffer(DeviceBuffer &&o) noexcept { *this = std::move(o); }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    std::swap(dtype_, o.dtype_);
    std::swap(n_, o.n_);
    std::swap(p_, o.p_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  ~DeviceBuffer() { emu::release(p_); }
  void *get() const { return p_; }
  float *floats() const { return static_cast<float *>(p_); }
  HostTensor download() const {
    HostTensor h;
    if (!p_) return h;
    h.dtype = dtype_;
    h.n = n_;
    h.bytes.resize(size_t(n_) * size_t(dtypeSize(dtype_)));
    std::memcpy(h.bytes.data(), p_, h.bytes.size());
    return h;
  }

 private:
  DType dtype_ = DType::Float32;
  int64_t n_ = 0;
  void *p_ = nullptr;
};

// ---- Results ------------------------------------------------------------------------------------------

struct Check {
  std::string what;
  bool pass = false;
  double rel = NAN, elem = NAN, tol = NAN, tolElem = NAN;
  std::string detail;
};

struct CaseResult {
  std::string group, name;
  std::vector<Check> checks;
  std::vector<std::string> faults;
  double ms = 0;
  bool pass() const {
    if (!faults.empty() || checks.empty()) return false;
    for (const auto &c : checks)
      if (!c.pass) return false;
    return true;
  }
};

std::string jsonString(const std::string &s) {
  std::string o = "\"";
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\')
      o += '\\', o += char(c);
    else if (c == '\n')
      o += "\\n";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else
      o += char(c);
  }
  return o + "\"";
}

std::string jsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

void print(const CaseResult &r) {
  std::string line = "{\"group\":" + jsonString(r.group) + ",\"name\":" + jsonString(r.name) +
                     ",\"pass\":" + (r.pass() ? "true" : "false") + ",\"ms\":" + jsonNumber(r.ms) + ",\"checks\":[";
  for (size_t i = 0; i < r.checks.size(); ++i) {
    const Check &c = r.checks[i];
    line += (i ? "," : "") + std::string("{\"what\":") + jsonString(c.what) +
            ",\"pass\":" + (c.pass ? "true" : "false") + ",\"rel\":" + jsonNumber(c.rel) +
            ",\"elem\":" + jsonNumber(c.elem) + ",\"tol\":" + jsonNumber(c.tol) +
            ",\"tolElem\":" + jsonNumber(c.tolElem) + ",\"detail\":" + jsonString(c.detail) + "}";
  }
  line += "],\"faults\":[";
  for (size_t i = 0; i < r.faults.size(); ++i) line += (i ? "," : "") + jsonString(r.faults[i]);
  line += "]}\n";
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

// ---- Comparisons --------------------------------------------------------------------------------------

// Tolerances by the element type of the output (KERNELS.md, Numerics): float32 outputs are computed
// in float32 from the same inputs on both backends, whatever the input dtype; 16-bit outputs are
// each rounded once. `elem` bounds each element's error relative to max(|ref_i|, rms(ref), kFloor):
// loose enough for the summation-order differences of long sums, far below what a wrong term gives.
// kFloor is the magnitude below which values are compared in absolute terms: a gradient that is
// zero in exact arithmetic (dA at L = 1 without an initial state: h_t - dt B u = a h_{-1} = 0) is
// rounding noise of O(1e-10) on both backends, and its relative error would mean nothing. The
// inputs are O(1), so a real error is many orders of magnitude above it.
struct Tolerance {
  double rel, elem;
};
constexpr double kFloor = 1e-5;
Tolerance forwardTolerance(DType t) { return t == DType::Float32 ? Tolerance{1e-5, 1e-3} : Tolerance{1e-2, 5e-2}; }
Tolerance gradTolerance(DType t) { return t == DType::Float32 ? Tolerance{1e-4, 1e-3} : Tolerance{1e-2, 5e-2}; }

std::string describeElement(int64_t i, float got, float want) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "element %lld: got %.9g, want %.9g", static_cast<long long>(i), double(got),
                double(want));
  return buf;
}

Check compare(const std::string &what, const HostTensor &got, const HostTensor &want, Tolerance tol) {
  Check c;
  c.what = what;
  c.tol = tol.rel;
  c.tolElem = tol.elem;
  if (got.n != want.n || got.dtype != want.dtype) {
    c.detail = "size or dtype mismatch: " + std::to_string(got.n) + " vs " + std::to_string(want.n);
    return c;
  }
  double num = 0, den = 0;
  int64_t bad = -1;
  for (int64_t i = 0; i < got.n; ++i) {
    const double g = got.at(i), w = want.at(i);
    if (!std::isfinite(g) || !std::isfinite(w)) {
      if (bad < 0) bad = i;
      continue;
    }
    num += (g - w) * (g - w);
    den += w * w;
  }
  if (bad >= 0) {
    c.detail = "non-finite value, first at " + describeElement(bad, got.at(bad), want.at(bad));
    return c;
  }
  const double n = double(std::max<int64_t>(got.n, 1));
  c.rel = std::sqrt(num / std::max(den, n * kFloor * kFloor));
  const double rms = std::sqrt(den / n);
  double worst = 0;
  int64_t worstAt = 0;
  for (int64_t i = 0; i < got.n; ++i) {
    const double g = got.at(i), w = want.at(i);
    const double scale = std::max({std::fabs(w), rms, kFloor});
    const double e = std::fabs(g - w) / scale;
    if (e > worst) worst = e, worstAt = i;
  }
  c.elem = worst;
  c.pass = c.rel <= tol.rel && c.elem <= tol.elem;
  if (got.n > 0) c.detail = "worst " + describeElement(worstAt, got.at(worstAt), want.at(worstAt));
  return c;
}

// `schedules` names the two schedules compared, for the report.
Check sameBits(const std::string &what, const HostTensor &a, const HostTensor &b, const std::string &schedules = "") {
  Check c;
  c.what = what;
  if (a.n != b.n || a.dtype != b.dtype) {
    c.detail = "size or dtype mismatch";
    return c;
  }
  const size_t size = size_t(dtypeSize(a.dtype));
  for (int64_t i = 0; i < a.n; ++i) {
    if (std::memcmp(&a.bytes[size_t(i) * size], &b.bytes[size_t(i) * size], size) != 0) {
      c.detail = "first difference at " + describeElement(i, a.at(i), b.at(i)) +
                 (schedules.empty() ? "" : " (schedules: " + schedules + ")");
      return c;
    }
  }
  c.pass = true;
  return c;
}

// Runs one op of the CUDA backend and records what went wrong: an error returned, a fault of the
// emulator, a write outside an allocation, scratch memory not freed.
void runGpu(CaseResult &r, const std::string &what, const std::function<cudaError_t()> &op) {
  const size_t live = emu::liveAllocations();
  const cudaError_t e = op();
  emu::checkGuards();
  for (const auto &f : emu::takeFaults()) {  // (the same fault from every launch of an op, once)
    const std::string fault = what + ": " + f;
    if (std::find(r.faults.begin(), r.faults.end(), fault) == r.faults.end()) r.faults.push_back(fault);
  }
  if (e != cudaSuccess) r.faults.push_back(what + ": returned " + cudaGetErrorName(e));
  if (emu::liveAllocations() != live)
    r.faults.push_back(what + ": " + std::to_string(emu::liveAllocations() - live) + " allocation(s) not freed");
}

// The schedules (emu.h): the baseline (everything in ascending order, warps in lockstep), its
// mirror image with one warp at a time (the most skew between warps), and a shuffled one.
const emu::Schedule kAscending{emu::Order::Ascending, emu::Order::Ascending, false, 1};
const emu::Schedule kDescending{emu::Order::Descending, emu::Order::Descending, true, 1};
emu::Schedule randomSchedule(uint64_t seed) { return {emu::Order::Random, emu::Order::Random, true, seed}; }

// ---- Scan cases ---------------------------------------------------------------------------------------

struct ScanSpec {
  std::string group;
  DType dtype = DType::Float32;
  int64_t batch = 1, dim = 4, L = 16, N = 4;
  int64_t groupsB = 0, groupsC = 0;  // 0: fixed (dim, N); G: input-dependent (batch, G, N, L)
  bool D = false, z = false, deltaBias = false, softplus = false;
  bool initialState = false, lastState = false, dLastState = false, dInitialState = false;
  bool Apositive = false;  // A partly positive (growing states; keep L short)
  bool bigDelta = false;   // with softplus: a third of the deltas in [21, 24] (softplus's linear branch)
  bool backward = true;
  bool checkpoints = true;  // forward-only cases may run without (saveForBackward false)
  uint64_t seed = 1;
};

std::string layoutName(int64_t groups) {
  return groups == 0 ? "fixed" : groups == 1 ? "varying" : "grouped(G=" + std::to_string(groups) + ")";
}

std::string nameOf(const ScanSpec &s) {
  std::string name = std::string(dtypeName(s.dtype)) + " b" + std::to_string(s.batch) + " d" + std::to_string(s.dim) +
                     " L" + std::to_string(s.L) + " N" + std::to_string(s.N) + " B=" + layoutName(s.groupsB) +
                     " C=" + layoutName(s.groupsC);
  std::string opts;
  const std::pair<bool, const char *> flags[] = {{s.D, "D"},
                                                 {s.z, "z"},
                                                 {s.deltaBias, "deltaBias"},
                                                 {s.softplus, "softplus"},
                                                 {s.initialState, "initialState"},
                                                 {s.lastState, "lastState"},
                                                 {s.dLastState, "dLastState"},
                                                 {s.dInitialState, "dInitialState"},
                                                 {s.Apositive, "Apositive"},
                                                 {s.bigDelta, "bigDelta"},
                                                 {!s.backward, "forwardOnly"},
                                                 {!s.checkpoints, "noCheckpoints"}};
  for (const auto &[on, text] : flags)
    if (on) opts += (opts.empty() ? " +" : ",") + std::string(text);
  return name + opts;
}

struct ScanInputs {
  HostTensor u, delta, z, A, B, C, D, deltaBias, initialState, dout, dLastState;
};

ScanInputs makeInputs(const ScanSpec &s) {
  Rng rng(s.seed);
  const int64_t rows = s.batch * s.dim * s.L;
  auto normal = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto &x : v) x = float(rng.normal());
    return v;
  };
  auto uniform = [&](int64_t n, double a, double b) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto &x : v) x = float(rng.uniform(a, b));
    return v;
  };
  ScanInputs in;
  in.u = HostTensor::of(normal(rows), s.dtype);
  std::vector<float> delta = s.softplus ? uniform(rows, -3, 0) : uniform(rows, 0, 0.5);
  if (s.bigDelta)
    for (size_t i = 0; i < delta.size(); i += 3) delta[i] = float(rng.uniform(21, 24));
  in.delta = HostTensor::of(delta, s.dtype);
  std::vector<float> A(static_cast<size_t>(s.dim * s.N));
  for (auto &a : A) a = s.Apositive ? float(rng.uniform(-0.6, 0.15)) : float(-std::exp(rng.uniform(-1, 1)));
  in.A = HostTensor::of(A, DType::Float32);
  auto projection = [&](int64_t groups) {
    return groups == 0 ? HostTensor::of(normal(s.dim * s.N), DType::Float32)
                       : HostTensor::of(normal(s.batch * groups * s.N * s.L), s.dtype);
  };
  in.B = projection(s.groupsB);
  in.C = projection(s.groupsC);
  if (s.D) in.D = HostTensor::of(normal(s.dim), DType::Float32);
  if (s.z) in.z = HostTensor::of(normal(rows), s.dtype);
  if (s.deltaBias)
    in.deltaBias = HostTensor::of(s.softplus ? uniform(s.dim, -1, 1) : uniform(s.dim, 0, 0.2), DType::Float32);
  if (s.initialState) in.initialState = HostTensor::of(normal(s.batch * s.dim * s.N), DType::Float32);
  in.dout = HostTensor::of(normal(rows), s.dtype);
  if (s.dLastState) in.dLastState = HostTensor::of(normal(s.batch * s.dim * s.N), DType::Float32);
  return in;
}

// Pointers of the inputs in one memory (host tensors for the CPU backend, device buffers for the
// emulated GPU).
struct InputPointers {
  const void *u, *delta, *z, *A, *B, *C, *D, *deltaBias, *initialState, *dout, *dLastState;
};

InputPointers hostPointers(const ScanInputs &in) {
  return {in.u.data(),    in.delta.data(),     in.z.data(),
          in.A.data(),    in.B.data(),         in.C.data(),
          in.D.data(),    in.deltaBias.data(), in.initialState.data(),
          in.dout.data(), in.dLastState.data()};
}

struct DeviceInputs {
  DeviceBuffer u, delta, z, A, B, C, D, deltaBias, initialState, dout, dLastState;
  explicit DeviceInputs(const ScanInputs &in)
      : u(DeviceBuffer::upload(in.u)),
        delta(DeviceBuffer::upload(in.delta)),
        z(DeviceBuffer::upload(in.z)),
        A(DeviceBuffer::upload(in.A)),
        B(DeviceBuffer::upload(in.B)),
        C(DeviceBuffer::upload(in.C)),
        D(DeviceBuffer::upload(in.D)),
        deltaBias(DeviceBuffer::upload(in.deltaBias)),
        initialState(DeviceBuffer::upload(in.initialState)),
        dout(DeviceBuffer::upload(in.dout)),
        dLastState(DeviceBuffer::upload(in.dLastState)) {}
  InputPointers pointers() const {
    return {u.get(),         delta.get(),        z.get(),    A.get(),         B.get(), C.get(), D.get(),
            deltaBias.get(), initialState.get(), dout.get(), dLastState.get()};
  }
};

ScanForwardParams forwardParams(const ScanSpec &s, const InputPointers &in, int64_t chunkLength) {
  ScanForwardParams p;
  p.shape = {s.batch, s.dim, s.L, s.N};
  p.dtype = s.dtype;
  p.u = in.u;
  p.delta = in.delta;
  p.z = in.z;
  p.A = static_cast<const float *>(in.A);
  p.B = {in.B, s.groupsB};
  p.C = {in.C, s.groupsC};
  p.D = static_cast<const float *>(in.D);
  p.deltaBias = static_cast<const float *>(in.deltaBias);
  p.initialState = static_cast<const float *>(in.initialState);
  p.deltaSoftplus = s.softplus;
  p.chunkLength = chunkLength;
  return p;
}

int64_t chunksOf(const ScanSpec &s, int64_t chunkLength) { return (s.L + chunkLength - 1) / chunkLength; }

// The outputs of a forward and a backward, wherever they were computed, as host tensors.
struct ForwardResult {
  HostTensor out, lastState, checkpoints;
};
struct BackwardResult {
  std::vector<std::pair<std::string, HostTensor>> grads;  // name -> gradient, in a fixed order
};

int64_t projectionSize(const ScanSpec &s, int64_t groups) {
  return groups == 0 ? s.dim * s.N : s.batch * groups * s.N * s.L;
}
DType projectionType(const ScanSpec &s, int64_t groups) { return groups == 0 ? DType::Float32 : s.dtype; }

// Allocates the backward's outputs (given which inputs exist) through `alloc(name, dtype, n)`,
// which returns the pointer the op writes to.
template <class Alloc>
void bindGradients(const ScanSpec &s, ScanBackwardParams &bp, Alloc &&alloc) {
  const int64_t rows = s.batch * s.dim * s.L;
  bp.du = alloc("du", s.dtype, rows);
  bp.ddelta = alloc("ddelta", s.dtype, rows);
  if (s.z) bp.dz = alloc("dz", s.dtype, rows);
  bp.dA = static_cast<float *>(alloc("dA", DType::Float32, s.dim * s.N));
  bp.dB = alloc("dB", projectionType(s, s.groupsB), projectionSize(s, s.groupsB));
  bp.dC = alloc("dC", projectionType(s, s.groupsC), projectionSize(s, s.groupsC));
  if (s.D) bp.dD = static_cast<float *>(alloc("dD", DType::Float32, s.dim));
  if (s.deltaBias) bp.ddeltaBias = static_cast<float *>(alloc("ddeltaBias", DType::Float32, s.dim));
  if (s.dInitialState)
    bp.dInitialState = static_cast<float *>(alloc("dInitialState", DType::Float32, s.batch * s.dim * s.N));
}

// ---- The CPU backend (the oracle) ---------------------------------------------------------------------

struct CpuScan {
  ForwardResult fwd;
  BackwardResult bwd;
};

CpuScan cpuScan(const ScanSpec &s, const ScanInputs &in) {
  CpuScan r;
  const InputPointers ptr = hostPointers(in);
  const int64_t chunkLength = cpu::forwardChunkLength({s.batch, s.dim, s.L, s.N});
  ScanForwardParams p = forwardParams(s, ptr, chunkLength);
  r.fwd.out = HostTensor::poisoned(s.dtype, s.batch * s.dim * s.L);
  r.fwd.lastState = HostTensor::poisoned(DType::Float32, s.batch * s.dim * s.N);
  r.fwd.checkpoints = HostTensor::poisoned(DType::Float32, s.batch * s.dim * chunksOf(s, chunkLength) * s.N);
  p.out = r.fwd.out.data();
  p.lastState = r.fwd.lastState.floats();
  p.checkpoints = r.fwd.checkpoints.floats();
  cpu::scanForward(p);
  if (!s.backward) return r;

  ScanBackwardParams bp;
  bp.fwd = p;
  bp.dout = ptr.dout;
  bp.dLastState = static_cast<const float *>(ptr.dLastState);
  r.bwd.grads.reserve(9);  // pointers into the tensors must stay valid
  bindGradients(s, bp, [&](const char *name, DType t, int64_t n) {
    r.bwd.grads.emplace_back(name, HostTensor::poisoned(t, n));
    return r.bwd.grads.back().second.data();
  });
  cpu::scanBackward(bp);
  return r;
}

// ---- The CUDA backend, emulated --------------------------------------------------------------------

struct GpuForward {
  DeviceBuffer out, lastState, checkpoints;
  int64_t chunkLength = 0;
  ForwardResult download() const { return {out.download(), lastState.download(), checkpoints.download()}; }
};

GpuForward gpuForward(CaseResult &r, const ScanSpec &s, const DeviceInputs &dev, const std::string &label) {
  GpuForward g;
  g.chunkLength = cuda::forwardChunkLength({s.batch, s.dim, s.L, s.N});
  ScanForwardParams p = forwardParams(s, dev.pointers(), g.chunkLength);
  g.out = DeviceBuffer(s.dtype, s.batch * s.dim * s.L);
  p.out = g.out.get();
  if (s.lastState) {
    g.lastState = DeviceBuffer(DType::Float32, s.batch * s.dim * s.N);
    p.lastState = g.lastState.floats();
  }
  if (s.checkpoints) {
    g.checkpoints = DeviceBuffer(DType::Float32, s.batch * s.dim * chunksOf(s, g.chunkLength) * s.N);
    p.checkpoints = g.checkpoints.floats();
  }
  runGpu(r, label, [&] { return cuda::scanForward(p, nullptr); });
  return g;
}

BackwardResult gpuBackward(CaseResult &r, const ScanSpec &s, const DeviceInputs &dev, const GpuForward &fwd,
                           bool deterministic, const std::string &label) {
  const InputPointers ptr = dev.pointers();
  ScanBackwardParams bp;
  bp.fwd = forwardParams(s, ptr, fwd.chunkLength);
  bp.fwd.checkpoints = fwd.checkpoints.floats();
  bp.dout = ptr.dout;
  bp.dLastState = static_cast<const float *>(ptr.dLastState);
  bp.deterministic = deterministic;
  std::vector<std::pair<std::string, DeviceBuffer>> buffers;
  buffers.reserve(9);
  bindGradients(s, bp, [&](const char *name, DType t, int64_t n) {
    buffers.emplace_back(name, DeviceBuffer(t, n));
    return buffers.back().second.get();
  });
  runGpu(r, label, [&] { return cuda::scanBackward(bp, nullptr); });
  BackwardResult out;
  for (const auto &[name, buffer] : buffers) out.grads.emplace_back(name, buffer.download());
  return out;
}

CaseResult runScanCase(const ScanSpec &s) {
  CaseResult r;
  r.group = s.group;
  r.name = nameOf(s);
  const ScanInputs in = makeInputs(s);
  const CpuScan ref = cpuScan(s, in);
  const DeviceInputs dev(in);
  const Tolerance fwdTol = forwardTolerance(s.dtype), f32Fwd = forwardTolerance(DType::Float32);

  // Forward, and the same forward under the mirrored schedule.
  emu::setSchedule(kAscending);
  const GpuForward fwd = gpuForward(r, s, dev, "forward");
  const ForwardResult got = fwd.download();
  r.checks.push_back(compare("forward out", got.out, ref.fwd.out, fwdTol));
  if (s.lastState) r.checks.push_back(compare("forward lastState", got.lastState, ref.fwd.lastState, f32Fwd));
  emu::setSchedule(kDescending);
  const ForwardResult again = gpuForward(r, s, dev, "forward (mirrored schedule)").download();
  const std::string mirrored = emu::describe(kDescending) + " vs " + emu::describe(kAscending);
  r.checks.push_back(sameBits("forward out: same bits under another schedule", again.out, got.out, mirrored));
  if (s.lastState)
    r.checks.push_back(
        sameBits("forward lastState: same bits under another schedule", again.lastState, got.lastState, mirrored));
  if (s.checkpoints)
    r.checks.push_back(sameBits("forward checkpoints: same bits under another schedule", again.checkpoints,
                                got.checkpoints, mirrored));
  if (!s.backward) return r;

  // Backward: default mode, deterministic mode, and deterministic again under a random schedule.
  emu::setSchedule(kAscending);
  const BackwardResult byDefault = gpuBackward(r, s, dev, fwd, false, "backward");
  emu::setSchedule(kDescending);
  const BackwardResult deterministic = gpuBackward(r, s, dev, fwd, true, "backward deterministic");
  emu::setSchedule(randomSchedule(s.seed));
  const BackwardResult deterministicAgain =
      gpuBackward(r, s, dev, fwd, true, "backward deterministic (random schedule)");
  emu::setSchedule(kAscending);
  for (size_t i = 0; i < ref.bwd.grads.size(); ++i) {
    const std::string &name = ref.bwd.grads[i].first;
    const HostTensor &want = ref.bwd.grads[i].second;
    const Tolerance tol = gradTolerance(want.dtype);
    r.checks.push_back(compare("backward " + name, byDefault.grads[i].second, want, tol));
    r.checks.push_back(compare("backward deterministic " + name, deterministic.grads[i].second, want, tol));
    r.checks.push_back(sameBits("backward deterministic " + name + ": same bits under a random schedule",
                                deterministicAgain.grads[i].second, deterministic.grads[i].second,
                                emu::describe(randomSchedule(s.seed)) + " vs " + emu::describe(kDescending)));
    const bool atomics = (name == "dB" && s.groupsB > 0) || (name == "dC" && s.groupsC > 0);
    if (!atomics)
      r.checks.push_back(sameBits("backward " + name + ": default and deterministic modes agree",
                                  byDefault.grads[i].second, deterministic.grads[i].second));
  }
  return r;
}

// ---- Step cases -----------------------------------------------------------------------------------------

enum class Form { Channels, Heads, HeadsScalar };

struct StepSpec {
  std::string group;
  Form form = Form::Channels;
  DType dtype = DType::Float32;
  int64_t batch = 2, H = 4, P = 1, N = 16, G = 1;
  bool D = false, dPerHead = false, z = false, dtBias = false, softplus = false;
  int64_t extraSlots = -1;  // >= 0: stateBatchIndices over batch + extraSlots slots, some rows padding
  int steps = 2;
  uint64_t seed = 1;
};

std::string nameOf(const StepSpec &s) {
  const char *form = s.form == Form::Channels ? "channels" : s.form == Form::Heads ? "heads" : "heads/scalar";
  std::string name = std::string(form) + " " + dtypeName(s.dtype) + " b" + std::to_string(s.batch) + " H" +
                     std::to_string(s.H) + " P" + std::to_string(s.P) + " N" + std::to_string(s.N) + " G" +
                     std::to_string(s.G);
  std::string opts;
  const std::pair<bool, std::string> flags[] = {
      {s.D, s.dPerHead ? "D(H)" : "D"},
      {s.z, "z"},
      {s.dtBias, "dtBias"},
      {s.softplus, "softplus"},
      {s.extraSlots >= 0, "stateBatchIndices(" + std::to_string(s.batch + s.extraSlots) + " slots)"}};
  for (const auto &[on, text] : flags)
    if (on) opts += (opts.empty() ? " +" : ",") + text;
  return name + opts + " x" + std::to_string(s.steps);
}

CaseResult runStepCase(const StepSpec &s) {
  CaseResult r;
  r.group = s.group;
  r.name = nameOf(s);
  Rng rng(s.seed);
  const bool scalar = s.form == Form::HeadsScalar;
  const int64_t B = s.batch, H = s.H, P = s.P, N = s.N, G = s.G;
  const int64_t slots = s.extraSlots >= 0 ? B + s.extraSlots : B;
  auto normal = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto &x : v) x = float(rng.normal());
    return v;
  };
  auto uniform = [&](int64_t n, double a, double b) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto &x : v) x = float(rng.uniform(a, b));
    return v;
  };

  // The slots the rows use: distinct, in shuffled order, every third row padding (-1).
  std::vector<int32_t> indices;
  std::vector<bool> touched(size_t(slots), s.extraSlots < 0);
  if (s.extraSlots >= 0) {
    std::vector<int32_t> order(static_cast<size_t>(slots));
    for (int64_t i = 0; i < slots; ++i) order[size_t(i)] = int32_t(i);
    for (int64_t i = slots - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.next() % uint64_t(i + 1)]);
    for (int64_t i = 0; i < B; ++i) {
      indices.push_back(i % 3 == 1 ? -1 : order[size_t(i)]);
      if (indices.back() >= 0) touched[size_t(indices.back())] = true;
    }
  }

  const HostTensor A = HostTensor::of(
      [&] {
        std::vector<float> a(static_cast<size_t>(scalar ? H : H * P * N));
        for (auto &x : a) x = float(-std::exp(rng.uniform(-1, 1)));
        return a;
      }(),
      DType::Float32);
  HostTensor D, dtBias;
  if (s.D) D = HostTensor::of(normal(s.dPerHead ? H : H * P), DType::Float32);
  if (s.dtBias)
    dtBias = HostTensor::of(s.softplus ? uniform(scalar ? H : H * P, -1, 1) : uniform(scalar ? H : H * P, 0, 0.2),
                            DType::Float32);
  const HostTensor initial = HostTensor::of(normal(slots * H * P * N), DType::Float32);

  HostTensor cpuState = initial;
  DeviceBuffer gpuState = DeviceBuffer::upload(initial);
  DeviceBuffer gpuStateAgain = DeviceBuffer::upload(initial);  // the same steps under a random schedule
  const DeviceBuffer dA = DeviceBuffer::upload(A), dD = DeviceBuffer::upload(D), dBias = DeviceBuffer::upload(dtBias);
  DeviceBuffer dIndices;
  if (!indices.empty()) {
    dIndices = DeviceBuffer(DType::Float32, int64_t(indices.size()));  // int32 and float32 are both 4 bytes
    std::memcpy(dIndices.get(), indices.data(), indices.size() * 4);
  }
  const Tolerance yTol = forwardTolerance(s.dtype), stateTol = forwardTolerance(DType::Float32);

  for (int step = 0; step < s.steps; ++step) {
    const HostTensor x = HostTensor::of(normal(B * H * P), s.dtype);
    const HostTensor dt = HostTensor::of(
        s.softplus ? uniform(scalar ? B * H : B * H * P, -3, 0) : uniform(scalar ? B * H : B * H * P, 0, 0.5), s.dtype);
    HostTensor z;
    if (s.z) z = HostTensor::of(normal(B * H * P), s.dtype);
    const HostTensor Bp = HostTensor::of(normal(B * G * N), s.dtype), Cp = HostTensor::of(normal(B * G * N), s.dtype);

    auto params = [&](float *state, const void *px, const void *pdt, const void *pz, const void *pB, const void *pC,
                      const float *pA, const float *pD, const float *pBias, const int32_t *pIdx, void *y) {
      StateUpdateParams p;
      p.batch = B;
      p.heads = H;
      p.headDim = P;
      p.dstate = N;
      p.groups = G;
      p.stateSlots = slots;
      p.dtype = s.dtype;
      p.state = state;
      p.x = px;
      p.dt = pdt;
      p.z = pz;
      p.B = pB;
      p.C = pC;
      p.A = pA;
      p.D = pD;
      p.dtBias = pBias;
      p.dtSoftplus = s.softplus;
      p.scalarPerHead = scalar;
      p.dStrideHead = s.dPerHead ? 1 : P;  // as the addon sets them (csrc/addon.cc)
      p.dStrideP = s.dPerHead ? 0 : 1;
      p.stateBatchIndices = pIdx;
      p.y = y;
      return p;
    };

    HostTensor yRef = HostTensor::poisoned(s.dtype, B * H * P);
    cpu::stateUpdate(params(cpuState.floats(), x.data(), dt.data(), z.data(), Bp.data(), Cp.data(), A.floats(),
                            D.floats(), dtBias.floats(), indices.empty() ? nullptr : indices.data(), yRef.data()));

    const DeviceBuffer gx = DeviceBuffer::upload(x), gdt = DeviceBuffer::upload(dt), gz = DeviceBuffer::upload(z);
    const DeviceBuffer gB = DeviceBuffer::upload(Bp), gC = DeviceBuffer::upload(Cp);
    auto gpuStep = [&](DeviceBuffer &state, const std::string &label) {
      DeviceBuffer y(s.dtype, B * H * P);
      const StateUpdateParams p =
          params(state.floats(), gx.get(), gdt.get(), gz.get(), gB.get(), gC.get(), dA.floats(), dD.floats(),
                 dBias.floats(), static_cast<const int32_t *>(dIndices.get()), y.get());
      runGpu(r, label, [&] { return cuda::stateUpdate(p, nullptr); });
      return y.download();
    };
    emu::setSchedule(kAscending);
    const HostTensor y = gpuStep(gpuState, "step " + std::to_string(step));
    emu::setSchedule(randomSchedule(s.seed + uint64_t(step)));
    const HostTensor yAgain = gpuStep(gpuStateAgain, "step " + std::to_string(step) + " (random schedule)");
    emu::setSchedule(kAscending);

    const std::string at = "step " + std::to_string(step) + " ";
    r.checks.push_back(compare(at + "y", y, yRef, yTol));
    r.checks.push_back(
        sameBits(at + "y: same bits under a random schedule", yAgain, y,
                 emu::describe(randomSchedule(s.seed + uint64_t(step))) + " vs " + emu::describe(kAscending)));
    if (!indices.empty()) {  // padding rows: y is exactly zero
      Check c;
      c.what = at + "y of padding rows is 0";
      c.pass = true;
      for (int64_t i = 0; i < B && c.pass; ++i) {
        if (indices[size_t(i)] >= 0) continue;
        for (int64_t k = i * H * P; k < (i + 1) * H * P; ++k) {
          if (y.at(k) != 0.0f || std::signbit(y.at(k))) {
            c.pass = false;
            c.detail = "row " + std::to_string(i) + ": " + describeElement(k, y.at(k), 0.0f);
            break;
          }
        }
      }
      r.checks.push_back(c);
    }
  }

  const HostTensor state = gpuState.download();
  r.checks.push_back(compare("state after the steps", state, cpuState, stateTol));
  r.checks.push_back(sameBits("state: same bits under a random schedule", gpuStateAgain.download(), state,
                              "random vs " + emu::describe(kAscending)));
  Check untouched;
  untouched.what = "slots no row names keep their bits";
  untouched.pass = true;
  const int64_t slotSize = H * P * N;
  for (int64_t slot = 0; slot < slots && untouched.pass; ++slot) {
    if (touched[size_t(slot)]) continue;
    if (std::memcmp(&state.bytes[size_t(slot * slotSize) * 4], &initial.bytes[size_t(slot * slotSize) * 4],
                    size_t(slotSize) * 4) != 0) {
      untouched.pass = false;
      untouched.detail = "slot " + std::to_string(slot) + " changed";
    }
  }
  r.checks.push_back(untouched);
  return r;
}

// ---- The cases ------------------------------------------------------------------------------------------

std::vector<ScanSpec> scanCases() {
  std::vector<ScanSpec> cases;
  uint64_t seed = 1000;
  auto add = [&](ScanSpec s) {
    s.seed = ++seed;
    cases.push_back(s);
  };
  auto all = [](ScanSpec s) {  // every option on
    s.D = s.z = s.deltaBias = s.softplus = s.initialState = s.lastState = s.dLastState = s.dInitialState = true;
    return s;
  };

  // Sequence lengths: each forward chunk shape (ITEMS = 1, 2, 4, 8 for L <= 32, 64, 128, more),
  // full and partial chunks, one and several chunks (the backward's chunk is at most 128 steps, so
  // L = 300 is 3 backward chunks and L = 1000 is 8), with vector loads (L a multiple of the chunk,
  // aligned rows) and without.
  for (int64_t L : {1, 7, 32, 50, 64, 100, 128, 256, 300, 1000}) {
    ScanSpec s;
    s.group = "scan float32: sequence lengths and chunk shapes";
    s.L = L;
    s.batch = 2;
    s.dim = 5;
    s.N = L >= 300 ? 8 : 16;
    s.groupsB = 1;
    s.groupsC = 1;
    add(all(s));
    s.groupsB = s.groupsC = 0;
    s.dim = 3;
    s.batch = 1;
    add(s);  // no options
  }

  // Kinds of B and C, independently: fixed, input-dependent, grouped; dim 12 gives cells of
  // several sizes (gcd of the group sizes) and warps past the end of a cell.
  const std::pair<int64_t, int64_t> layouts[] = {{0, 0}, {1, 0}, {0, 1},  {1, 1},  {2, 0}, {0, 3},
                                                 {2, 3}, {4, 6}, {12, 1}, {3, 12}, {6, 4}};
  for (const auto &[gB, gC] : layouts) {
    ScanSpec s;
    s.group = "scan float32: kinds of B and C";
    s.batch = 2;
    s.dim = 12;
    s.L = 150;
    s.N = 8;
    s.groupsB = gB;
    s.groupsC = gC;
    s.D = s.z = s.lastState = true;
    add(s);
  }

  // Each option alone, then in combinations, with both kinds of B / C.
  {
    ScanSpec base;
    base.group = "scan float32: options";
    base.batch = 2;
    base.dim = 6;
    base.L = 90;
    base.N = 8;
    base.groupsB = 2;
    for (int option = 0; option < 10; ++option) {
      ScanSpec s = base;
      switch (option) {
        case 0: s.D = true; break;
        case 1: s.z = true; break;
        case 2: s.deltaBias = true; break;
        case 3: s.softplus = true; break;
        case 4: s.initialState = true; break;
        case 5: s.lastState = true; break;
        case 6: s.lastState = s.dLastState = true; break;
        case 7: s.dInitialState = true; break;
        case 8: s.initialState = s.dInitialState = s.softplus = s.deltaBias = true; break;
        case 9: s.softplus = s.bigDelta = s.deltaBias = s.z = true; break;
      }
      add(s);
      s.groupsB = 0;
      s.groupsC = 1;
      add(s);
    }
    ScanSpec s = all(base);
    s.Apositive = true;
    s.L = 40;
    add(s);
    s.L = 400;
    s.Apositive = false;
    s.bigDelta = true;
    add(s);
  }

  // State sizes: N = 1, odd N below and above a warp, N = 256 (the API's maximum), in one chunk
  // and in several.
  for (int64_t N : {1, 3, 33, 64, 256}) {
    ScanSpec s;
    s.group = "scan float32: state sizes";
    s.batch = 1;
    s.dim = N >= 64 ? 4 : 6;
    s.L = N == 256 ? 70 : 160;
    s.N = N;
    s.groupsB = 1;
    s.groupsC = N == 256 ? 0 : 2;
    add(all(s));
  }
  {
    ScanSpec s;
    s.group = "scan float32: state sizes";
    s.batch = 1;
    s.dim = 2;
    s.L = 260;
    s.N = 256;
    s.groupsB = s.groupsC = 1;
    add(all(s));
  }

  // Random combinations of everything above, small enough to be cheap: breadth beyond the grid.
  {
    Rng rng(20240611);
    auto pick = [&](std::initializer_list<int64_t> xs) { return *(xs.begin() + rng.next() % xs.size()); };
    const DType dtypes[] = {DType::Float32, DType::Float16, DType::BFloat16};
    for (int k = 0; k < 24; ++k) {
      ScanSpec s;
      s.group = "scan: random combinations";
      s.dtype = dtypes[k % 3];
      do {
        s.batch = pick({1, 2, 3});
        s.dim = pick({1, 2, 3, 4, 5, 6, 8, 12, 16, 24});
        const int64_t bucket = pick({32, 64, 128, 600});  // one per forward chunk shape
        s.L = 1 + int64_t(rng.next() % uint64_t(bucket));
        s.N = pick({1, 2, 3, 7, 16, 17, 32, 40});
      } while (s.batch * s.dim * s.L * s.N > 60000);
      auto layout = [&] {  // fixed, input-dependent, or grouped with a G that divides dim
        std::vector<int64_t> choices = {0, 1};
        for (int64_t g = 2; g <= s.dim; ++g)
          if (s.dim % g == 0) choices.push_back(g);
        return choices[rng.next() % choices.size()];
      };
      s.groupsB = layout();
      s.groupsC = layout();
      auto coin = [&] { return rng.next() % 2 == 0; };
      s.D = coin();
      s.z = coin();
      s.deltaBias = coin();
      s.softplus = coin();
      s.initialState = coin();
      s.lastState = coin();
      s.dLastState = s.lastState && coin();
      s.dInitialState = coin();
      s.bigDelta = s.softplus && rng.next() % 4 == 0;
      // Growing states amplify rounding (y cancels large terms): only over short sequences.
      s.Apositive = s.L <= 32 && rng.next() % 4 == 0;
      add(s);
    }
  }

  // 16-bit inputs: the chunk shapes, the kinds of B / C, odd lengths (rows of an odd number of
  // 2-byte elements are never vector-aligned), every option.
  for (DType t : {DType::Float16, DType::BFloat16}) {
    const std::string group = std::string("scan ") + dtypeName(t);
    for (int64_t L : {1, 31, 64, 100, 128, 300, 1000}) {
      ScanSpec s;
      s.group = group;
      s.dtype = t;
      s.batch = 2;
      s.dim = 4;
      s.L = L;
      s.N = L >= 300 ? 4 : 16;
      s.groupsB = L % 2 ? 2 : 1;
      s.groupsC = L % 2 ? 0 : 4;
      add(all(s));
    }
    for (const auto &[gB, gC] : {std::pair<int64_t, int64_t>{0, 0}, {1, 0}, {0, 1}, {2, 3}}) {
      ScanSpec s;
      s.group = group;
      s.dtype = t;
      s.batch = 2;
      s.dim = 6;
      s.L = 129;
      s.N = 33;
      s.groupsB = gB;
      s.groupsC = gC;
      s.D = s.z = s.softplus = s.deltaBias = true;
      add(s);
    }
  }

  // Many rows: the backward cuts a cell into at most kBackwardTargetBlocks partitions, so only
  // with more than 1024 row sets of 4 channels does a partition hold several row sets (the
  // deterministic partials are then read, added to and written back).
  {
    ScanSpec s;
    s.group = "scan: many rows (several row sets per partition)";
    s.batch = 1;
    s.dim = 4200;
    s.L = 3;
    s.N = 2;
    s.groupsB = 1;
    s.groupsC = 2;
    s.D = s.deltaBias = true;
    add(s);
    s.dtype = DType::BFloat16;
    s.batch = 2;
    s.dim = 2100;
    s.groupsB = 3;
    s.groupsC = 0;
    add(s);
  }

  // Forward only, without checkpoints (saveForBackward false).
  for (int64_t L : {20, 200, 700}) {
    ScanSpec s;
    s.group = "scan: forward without checkpoints";
    s.batch = 2;
    s.dim = 3;
    s.L = L;
    s.N = 8;
    s.groupsB = 1;
    s.backward = false;
    s.checkpoints = false;
    s.lastState = true;
    s.initialState = true;
    add(s);
  }
  return cases;
}

std::vector<StepSpec> stepCases() {
  std::vector<StepSpec> cases;
  uint64_t seed = 5000;
  auto add = [&](StepSpec s) {
    s.seed = ++seed;
    cases.push_back(s);
  };
  for (DType t : {DType::Float32, DType::Float16, DType::BFloat16}) {
    const std::string dtype = dtypeName(t);
    // Channels form (H = dim, P = 1); N decides how many rows share a warp (32 / lanes per row).
    for (int64_t N : {1, 5, 16, 48, 256}) {
      StepSpec s;
      s.group = "step " + dtype + ": channels form";
      s.dtype = t;
      s.form = Form::Channels;
      s.batch = 3;
      s.H = 10;
      s.P = 1;
      s.N = N;
      s.G = N == 16 ? 2 : 1;
      s.D = s.z = s.dtBias = s.softplus = N != 5;
      add(s);
    }
    // Heads form.
    for (int64_t N : {4, 16, 64}) {
      StepSpec s;
      s.group = "step " + dtype + ": heads form";
      s.dtype = t;
      s.form = Form::Heads;
      s.batch = 2;
      s.H = 4;
      s.P = 3;
      s.N = N;
      s.G = 2;
      s.D = s.z = s.dtBias = true;
      s.softplus = N == 16;
      add(s);
    }
    // One scalar per head, D per head or per (head, position).
    for (bool dPerHead : {false, true}) {
      StepSpec s;
      s.group = "step " + dtype + ": heads form, one scalar per head";
      s.dtype = t;
      s.form = Form::HeadsScalar;
      s.batch = 2;
      s.H = 6;
      s.P = 8;
      s.N = dPerHead ? 32 : 128;
      s.G = 3;
      s.D = true;
      s.dPerHead = dPerHead;
      s.z = s.dtBias = s.softplus = true;
      add(s);
    }
    // stateBatchIndices with padding rows and more slots than rows.
    for (Form form : {Form::Channels, Form::Heads, Form::HeadsScalar}) {
      StepSpec s;
      s.group = "step " + dtype + ": stateBatchIndices and padding rows";
      s.dtype = t;
      s.form = form;
      s.batch = 5;
      s.H = form == Form::Channels ? 6 : 2;
      s.P = form == Form::Channels ? 1 : 4;
      s.N = form == Form::Heads ? 16 : 8;
      s.G = form == Form::Channels ? 1 : 2;
      s.D = s.z = s.dtBias = true;
      s.extraSlots = 3;
      s.steps = 3;
      add(s);
    }
  }
  return cases;
}

}  // namespace

int main(int argc, char **argv) {
  // The oracle's instruction set, unless the caller chose one: the baseline kernels round the same
  // way on every x86-64 machine, so the comparisons (and their margins) do not depend on whether
  // the CI machine has AVX2 or AVX-512.
  setenv("SELECTIVE_SCAN_CPU_ISA", "baseline", 0);
  std::string filter;
  bool list = false;
  int shard = 0, shards = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--filter" && i + 1 < argc)
      filter = argv[++i];
    else if (a == "--list")
      list = true;
    else if (a == "--shard" && i + 1 < argc && std::sscanf(argv[++i], "%d/%d", &shard, &shards) == 2) {
    } else {
      std::fprintf(stderr, "usage: %s [--filter TEXT] [--list] [--shard I/N]\n", argv[0]);
      return 2;
    }
  }

  // Every case, as a (group, name, run) triple; the shard takes every shards-th one.
  struct Entry {
    std::string group, name;
    std::function<CaseResult()> run;
  };
  std::vector<Entry> entries;
  entries.push_back({"emulator self-test", "emulator self-test", [] {
                       CaseResult r;
                       r.group = r.name = "emulator self-test";
                       std::vector<emutest::SelfTestResult> results;
                       emutest::runSelfTests(results);
                       for (const auto &t : results) {
                         Check c;
                         c.what = t.name;
                         c.pass = t.pass;
                         c.detail = t.detail;
                         r.checks.push_back(c);
                       }
                       return r;
                     }});
  for (const ScanSpec &s : scanCases()) entries.push_back({s.group, nameOf(s), [s] { return runScanCase(s); }});
  for (const StepSpec &s : stepCases()) entries.push_back({s.group, nameOf(s), [s] { return runStepCase(s); }});

  int run = 0, failed = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry &e = entries[i];
    if (!filter.empty() && (e.group + " " + e.name).find(filter) == std::string::npos) continue;
    if (int(i % size_t(shards)) != shard) continue;
    if (list) {
      std::printf("%s: %s\n", e.group.c_str(), e.name.c_str());
      continue;
    }
    std::fprintf(stderr, "case: %s: %s\n", e.group.c_str(), e.name.c_str());  // to attribute sanitizer reports
    const auto t0 = std::chrono::steady_clock::now();
    CaseResult r = e.run();
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    print(r);
    ++run;
    if (!r.pass()) ++failed;
  }
  if (list) return 0;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const emu::Stats st = emu::stats();
  std::printf(
      "{\"summary\":{\"cases\":%d,\"failed\":%d,\"seconds\":%.2f,\"launches\":%llu,\"blocks\":%llu,"
      "\"threads\":%llu,\"collectives\":%llu,\"vectorLoads\":%llu,\"cpuIsa\":%s}}\n",
      run, failed, seconds, static_cast<unsigned long long>(st.launches), static_cast<unsigned long long>(st.blocks),
      static_cast<unsigned long long>(st.threads), static_cast<unsigned long long>(st.collectives),
      static_cast<unsigned long long>(st.vectorLoads), jsonString(cpu::isaName()).c_str());
  return failed == 0 ? 0 : 1;
}
