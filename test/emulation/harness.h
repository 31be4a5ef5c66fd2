// What the emulation cases share (test/emulation/cases/*.cc, one file per op): random inputs, host
// tensors and emulated device buffers, the checks and their JSON report, the schedules, and the
// registry of cases that driver.cc runs.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace emutest {

using namespace ss;

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

// n values drawn from scale * N(0, 1), or uniformly from [a, b), in order.
inline std::vector<float> normals(Rng &rng, int64_t n, double scale = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto &x : v) x = float(scale * rng.normal());
  return v;
}
inline std::vector<float> uniforms(Rng &rng, int64_t n, double a, double b) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto &x : v) x = float(rng.uniform(a, b));
  return v;
}

inline const char *dtypeName(DType t) {
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
  static HostTensor ofInt32(const std::vector<int32_t> &values) {  // the bits, in 4-byte elements; none if empty
    HostTensor h;
    h.n = int64_t(values.size());
    h.bytes.resize(values.size() * 4);
    if (!values.empty()) std::memcpy(h.bytes.data(), values.data(), values.size() * 4);
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

inline std::string jsonString(const std::string &s) {
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

inline std::string jsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

inline void print(const CaseResult &r) {
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

// Tolerances by the element type of the output (docs/ARCHITECTURE.md, Numerics): float32 outputs are computed
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
inline Tolerance forwardTolerance(DType t) {
  return t == DType::Float32 ? Tolerance{1e-5, 1e-3} : Tolerance{1e-2, 5e-2};
}
inline Tolerance gradTolerance(DType t) { return t == DType::Float32 ? Tolerance{1e-4, 1e-3} : Tolerance{1e-2, 5e-2}; }

inline std::string describeElement(int64_t i, float got, float want) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "element %lld: got %.9g, want %.9g", static_cast<long long>(i), double(got),
                double(want));
  return buf;
}

inline Check compare(const std::string &what, const HostTensor &got, const HostTensor &want, Tolerance tol) {
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

// With a NaN input: non-finite exactly where the CPU backend's are, the finite elements compared.
inline Check compareFinite(const std::string &what, const HostTensor &got, const HostTensor &want, Tolerance tol) {
  if (got.n != want.n) return compare(what, got, want, tol);
  std::vector<float> g, w;
  for (int64_t i = 0; i < got.n; ++i) {
    if (std::isfinite(got.at(i)) != std::isfinite(want.at(i))) {
      Check c;
      c.what = what;
      c.detail = "finite on one backend only: " + describeElement(i, got.at(i), want.at(i));
      return c;
    }
    if (std::isfinite(got.at(i))) g.push_back(got.at(i)), w.push_back(want.at(i));
  }
  Check c = compare(what + " (finite elements)", HostTensor::of(g, got.dtype), HostTensor::of(w, want.dtype), tol);
  if (g.empty()) c.pass = true;
  return c;
}

// `schedules` names the two schedules compared, for the report.
inline Check sameBits(const std::string &what, const HostTensor &a, const HostTensor &b,
                      const std::string &schedules = "") {
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
// `op` returns the op's status (gpu::Status: a cudaError_t).
inline void runGpu(CaseResult &r, const std::string &what, const std::function<int()> &op) {
  const size_t live = emu::liveAllocations();
  const cudaError_t e = cudaError_t(op());
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
inline const emu::Schedule kAscending{emu::Order::Ascending, emu::Order::Ascending, false, 1};
inline const emu::Schedule kDescending{emu::Order::Descending, emu::Order::Descending, true, 1};
inline emu::Schedule randomSchedule(uint64_t seed) { return {emu::Order::Random, emu::Order::Random, true, seed}; }

// ---- The backward of a scan --------------------------------------------------------------------------

// Gradients by name, in the order a case's bindGradients allocates them.
using NamedTensors = std::vector<std::pair<std::string, HostTensor>>;

// Device buffers for the gradients a case's bindGradients asks for: (*this)(name, dtype, n)
// returns the pointer the op writes to; download() their values, in that order.
class GradientBuffers {
 public:
  void *operator()(const char *name, DType t, int64_t n) {
    buffers_.emplace_back(name, DeviceBuffer(t, n));
    return buffers_.back().second.get();
  }
  NamedTensors download() const {
    NamedTensors out;
    for (const auto &[name, buffer] : buffers_) out.emplace_back(name, buffer.download());
    return out;
  }

 private:
  std::vector<std::pair<std::string, DeviceBuffer>> buffers_;
};

// The backward run three times on the emulated GPU (run(deterministic, label) returns the
// gradients in the order of `want`, the CPU's): the default mode, the deterministic mode under the
// mirrored schedule and again under a random one. Checked: every gradient of both modes against
// the CPU's (with `compare`), the deterministic mode's bits under both schedules, and the default
// mode's bits equal to the deterministic's, except where atomic(name) (float atomics by default).
template <class Run, class Compare, class Atomic>
void checkBackward(CaseResult &r, const NamedTensors &want, uint64_t seed, Run &&run, Compare &&compare,
                   Atomic &&atomic) {
  emu::setSchedule(kAscending);
  const NamedTensors byDefault = run(false, "backward");
  emu::setSchedule(kDescending);
  const NamedTensors deterministic = run(true, "backward deterministic");
  emu::setSchedule(randomSchedule(seed));
  const NamedTensors deterministicAgain = run(true, "backward deterministic (random schedule)");
  emu::setSchedule(kAscending);
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string &name = want[i].first;
    const Tolerance tol = gradTolerance(want[i].second.dtype);
    r.checks.push_back(compare("backward " + name, byDefault[i].second, want[i].second, tol));
    r.checks.push_back(compare("backward deterministic " + name, deterministic[i].second, want[i].second, tol));
    r.checks.push_back(sameBits("backward deterministic " + name + ": same bits under a random schedule",
                                deterministicAgain[i].second, deterministic[i].second,
                                emu::describe(randomSchedule(seed)) + " vs " + emu::describe(kDescending)));
    if (!atomic(name))
      r.checks.push_back(sameBits("backward " + name + ": default and deterministic modes agree", byDefault[i].second,
                                  deterministic[i].second));
  }
}

// ---- Steps on a cache of states (stateBatchIndices) -----------------------------------------------------

// The slots the rows of a step use: distinct, in shuffled order, every third row padding (-1).
// Without stateBatchIndices (given false): no indices, and every slot counts as touched.
struct SlotIndices {
  std::vector<int32_t> indices;
  std::vector<bool> touched;  // per slot: some row names it
};
inline SlotIndices slotIndices(Rng &rng, int64_t rows, int64_t slots, bool given) {
  SlotIndices s;
  s.touched.assign(size_t(slots), !given);
  if (!given) return s;
  std::vector<int32_t> order(static_cast<size_t>(slots));
  for (int64_t i = 0; i < slots; ++i) order[size_t(i)] = int32_t(i);
  for (int64_t i = slots - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.next() % uint64_t(i + 1)]);
  for (int64_t i = 0; i < rows; ++i) {
    s.indices.push_back(i % 3 == 1 ? -1 : order[size_t(i)]);
    if (s.indices.back() >= 0) s.touched[size_t(s.indices.back())] = true;
  }
  return s;
}

// The output of every padding row (index -1; rowSize elements each) is exactly +0.
inline Check paddingRowsAreZero(const std::string &what, const HostTensor &y, const std::vector<int32_t> &indices,
                                int64_t rowSize) {
  Check c;
  c.what = what;
  c.pass = true;
  for (size_t i = 0; i < indices.size() && c.pass; ++i) {
    if (indices[i] >= 0) continue;
    for (int64_t k = int64_t(i) * rowSize; k < int64_t(i + 1) * rowSize; ++k) {
      if (y.at(k) != 0.0f || std::signbit(y.at(k))) {
        c.pass = false;
        c.detail = "row " + std::to_string(i) + ": " + describeElement(k, y.at(k), 0.0f);
        break;
      }
    }
  }
  return c;
}

// The slots no row names (slotBytes each) hold the bits they held before the steps.
inline Check untouchedSlotsKeepTheirBits(const HostTensor &state, const HostTensor &initial,
                                         const std::vector<bool> &touched, size_t slotBytes) {
  Check c;
  c.what = "slots no row names keep their bits";
  c.pass = true;
  for (size_t slot = 0; slot < touched.size() && c.pass; ++slot) {
    if (touched[slot]) continue;
    if (std::memcmp(&state.bytes[slot * slotBytes], &initial.bytes[slot * slotBytes], slotBytes) != 0) {
      c.pass = false;
      c.detail = "slot " + std::to_string(slot) + " changed";
    }
  }
  return c;
}

// ---- The registry of cases ------------------------------------------------------------------------

// One case: its group (one vitest test per group, from `--list`), its name and how to run it.
struct CaseEntry {
  std::string group, name;
  std::function<CaseResult()> run;
};

// Each cases/*.cc file adds its op's cases with one EMU_CASES block; driver.cc runs them all.
std::vector<CaseEntry> &caseRegistry();
struct CaseSource {
  explicit CaseSource(void (*add)(std::vector<CaseEntry> &));
};

}  // namespace emutest

#define EMU_CASES(name)                                       \
  static void name(std::vector<::emutest::CaseEntry> &cases); \
  static const ::emutest::CaseSource name##Source(name);      \
  static void name(std::vector<::emutest::CaseEntry> &cases)
