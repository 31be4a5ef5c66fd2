// Emulation cases of the selective scan (csrc/ops/selective_scan): forward, backward (default and
// deterministic), against the CPU backend; see driver.cc for what every case checks.
#include <tuple>

#include "../harness.h"
#include "ops/selective_scan/scan.h"

using namespace emutest;

namespace {

// B or C of a case: groups == 0 is fixed (dim, N); G > 0 input-dependent (batch, G, N, L).
Projection projectionOf(const void *data, int64_t groups) {
  return groups == 0 ? Projection::fixed(static_cast<const float *>(data)) : Projection::varyingGroups(data, groups);
}

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
  bool checkpoints = true;         // forward-only cases may run without (saveForBackward false)
  std::vector<int32_t> cuSeqlens;  // empty: none (batch rows); else batch 1 and these packed sequences
  int64_t nanAt = -1;              // >= 0: u is NaN at this step (batch row 0, channel 0)
  uint64_t seed = 1;
};

// The rows of the states: the packed sequences, else the batch rows.
int64_t sequencesOf(const ScanSpec &s) { return s.cuSeqlens.empty() ? s.batch : int64_t(s.cuSeqlens.size()) - 1; }

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
  if (!s.cuSeqlens.empty()) {
    std::string seqs;  // the offsets, or their count and the case's seed when there are many
    if (s.cuSeqlens.size() <= 12)
      for (int32_t v : s.cuSeqlens) seqs += (seqs.empty() ? "" : ",") + std::to_string(v);
    else
      seqs = std::to_string(s.cuSeqlens.size() - 1) + " sequences, seed " + std::to_string(s.seed);
    opts += (opts.empty() ? " +" : ",") + std::string("cuSeqlens[") + seqs + "]";
  }
  if (s.nanAt >= 0) opts += (opts.empty() ? " +" : ",") + std::string("NaN in u at step ") + std::to_string(s.nanAt);
  return name + opts;
}

struct ScanInputs {
  HostTensor u, delta, z, A, B, C, D, deltaBias, initialState, dout, dLastState, cuSeqlens;
};

ScanInputs makeInputs(const ScanSpec &s) {
  Rng rng(s.seed);
  const int64_t rows = s.batch * s.dim * s.L;
  auto normal = [&](int64_t n) { return normals(rng, n); };
  auto uniform = [&](int64_t n, double a, double b) { return uniforms(rng, n, a, b); };
  ScanInputs in;
  std::vector<float> u = normal(rows);
  if (s.nanAt >= 0) u[size_t(s.nanAt)] = NAN;
  in.u = HostTensor::of(u, s.dtype);
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
  const int64_t states = sequencesOf(s) * s.dim * s.N;
  if (s.initialState) in.initialState = HostTensor::of(normal(states), DType::Float32);
  in.dout = HostTensor::of(normal(rows), s.dtype);
  if (s.dLastState) in.dLastState = HostTensor::of(normal(states), DType::Float32);
  in.cuSeqlens = HostTensor::ofInt32(s.cuSeqlens);
  return in;
}

// Pointers of the inputs in one memory (host tensors for the CPU backend, device buffers for the
// emulated GPU).
struct InputPointers {
  const void *u, *delta, *z, *A, *B, *C, *D, *deltaBias, *initialState, *dout, *dLastState, *cuSeqlens;
};

InputPointers hostPointers(const ScanInputs &in) {
  return {in.u.data(),    in.delta.data(),      in.z.data(),
          in.A.data(),    in.B.data(),          in.C.data(),
          in.D.data(),    in.deltaBias.data(),  in.initialState.data(),
          in.dout.data(), in.dLastState.data(), in.cuSeqlens.data()};
}

struct DeviceInputs {
  DeviceBuffer u, delta, z, A, B, C, D, deltaBias, initialState, dout, dLastState, cuSeqlens;
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
        dLastState(DeviceBuffer::upload(in.dLastState)),
        cuSeqlens(DeviceBuffer::upload(in.cuSeqlens)) {}
  InputPointers pointers() const {
    return {u.get(),         delta.get(),        z.get(),    A.get(),          B.get(),        C.get(), D.get(),
            deltaBias.get(), initialState.get(), dout.get(), dLastState.get(), cuSeqlens.get()};
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
  p.B = projectionOf(in.B, s.groupsB);
  p.C = projectionOf(in.C, s.groupsC);
  p.D = static_cast<const float *>(in.D);
  p.deltaBias = static_cast<const float *>(in.deltaBias);
  p.initialState = static_cast<const float *>(in.initialState);
  p.cuSeqlens = static_cast<const int32_t *>(in.cuSeqlens);
  p.sequences = sequencesOf(s);
  p.deltaSoftplus = s.softplus;
  p.chunkLength = chunkLength;
  return p;
}

int64_t chunksOf(const ScanSpec &s, int64_t chunkLength) { return (s.L + chunkLength - 1) / chunkLength; }

// The outputs of a forward and a backward, wherever they were computed, as host tensors.
struct ForwardResult {
  HostTensor out, lastState, checkpoints;
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
    bp.dInitialState = static_cast<float *>(alloc("dInitialState", DType::Float32, sequencesOf(s) * s.dim * s.N));
}

// ---- The CPU backend (the oracle) ---------------------------------------------------------------------

struct CpuScan {
  ForwardResult fwd;
  NamedTensors grads;
};

CpuScan cpuScan(const ScanSpec &s, const ScanInputs &in) {
  CpuScan r;
  const InputPointers ptr = hostPointers(in);
  const int64_t chunkLength = cpu::scanChunkLength({s.batch, s.dim, s.L, s.N});
  ScanForwardParams p = forwardParams(s, ptr, chunkLength);
  r.fwd.out = HostTensor::poisoned(s.dtype, s.batch * s.dim * s.L);
  r.fwd.lastState = HostTensor::poisoned(DType::Float32, sequencesOf(s) * s.dim * s.N);
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
  r.grads.reserve(9);  // pointers into the tensors must stay valid
  bindGradients(s, bp, [&](const char *name, DType t, int64_t n) {
    r.grads.emplace_back(name, HostTensor::poisoned(t, n));
    return r.grads.back().second.data();
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
  g.chunkLength = cuda::scanChunkLength({s.batch, s.dim, s.L, s.N});
  ScanForwardParams p = forwardParams(s, dev.pointers(), g.chunkLength);
  g.out = DeviceBuffer(s.dtype, s.batch * s.dim * s.L);
  p.out = g.out.get();
  if (s.lastState) {
    g.lastState = DeviceBuffer(DType::Float32, sequencesOf(s) * s.dim * s.N);
    p.lastState = g.lastState.floats();
  }
  if (s.checkpoints) {
    g.checkpoints = DeviceBuffer(DType::Float32, s.batch * s.dim * chunksOf(s, g.chunkLength) * s.N);
    p.checkpoints = g.checkpoints.floats();
  }
  runGpu(r, label, [&] { return cuda::scanForward(p, nullptr); });
  return g;
}

NamedTensors gpuBackward(CaseResult &r, const ScanSpec &s, const DeviceInputs &dev, const GpuForward &fwd,
                         bool deterministic, const std::string &label) {
  const InputPointers ptr = dev.pointers();
  ScanBackwardParams bp;
  bp.fwd = forwardParams(s, ptr, fwd.chunkLength);
  bp.fwd.checkpoints = fwd.checkpoints.floats();
  bp.dout = ptr.dout;
  bp.dLastState = static_cast<const float *>(ptr.dLastState);
  bp.deterministic = deterministic;
  GradientBuffers buffers;
  bindGradients(s, bp, buffers);
  runGpu(r, label, [&] { return cuda::scanBackward(bp, nullptr); });
  return buffers.download();
}

CaseResult runScanCase(const ScanSpec &s) {
  CaseResult r;
  r.group = s.group;
  r.name = nameOf(s);
  const ScanInputs in = makeInputs(s);
  const CpuScan ref = cpuScan(s, in);
  const DeviceInputs dev(in);
  const Tolerance fwdTol = forwardTolerance(s.dtype), f32Fwd = forwardTolerance(DType::Float32);
  const auto compare = [&](const std::string &what, const HostTensor &got, const HostTensor &want, Tolerance tol) {
    return s.nanAt >= 0 ? compareFinite(what, got, want, tol) : emutest::compare(what, got, want, tol);
  };

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
  // Only dB and dC, input-dependent, go through float atomics by default.
  checkBackward(
      r, ref.grads, s.seed,
      [&](bool deterministic, const std::string &label) { return gpuBackward(r, s, dev, fwd, deterministic, label); },
      compare,
      [&](const std::string &name) { return (name == "dB" && s.groupsB > 0) || (name == "dC" && s.groupsC > 0); });
  return r;
}

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

  // Sequence lengths: each forward chunk shape (ITEMS = 1, 2, 4, 8 for L <= 32, 64, 128, more;
  // 16-bit inputs go to 16 above 256, below),
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

  // 16-bit inputs: the chunk shapes (ITEMS = 16 above 256 steps: L = 1000 is a full chunk and a
  // partial one, 1536 three full chunks of four checkpoint intervals each, both on the forward's
  // full-chunk path), the kinds of B / C, odd lengths (rows of an odd number of 2-byte elements
  // are never vector-aligned), every option.
  for (DType t : {DType::Float16, DType::BFloat16}) {
    const std::string group = std::string("scan ") + dtypeName(t);
    for (int64_t L : {1, 31, 64, 100, 128, 300, 1000, 1536}) {
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

  // Packed sequences (cuSeqlens), forward and backward: boundaries on chunk edges and inside
  // chunks, empty sequences first, inside and last, one sequence over the whole row; the chunk
  // shapes (packed rows run in the 8-step forward kernel, 256-step chunks, whatever the dtype and L:
  // L <= 64, where the backward's checkpoint interval is 64 steps and the forward's 128; L = 128;
  // L = 512 and 1536, where a chunk with a start inside runs as 64-step chunks), every option,
  // every kind of B / C.
  {
    struct Packing {
      DType dtype;
      int64_t L;
      std::vector<int32_t> cu;
    };
    const std::vector<Packing> packings = {
        {DType::Float32, 1, {0, 1}},
        {DType::Float32, 40, {0, 7, 40}},
        {DType::BFloat16, 64, {0, 0, 33, 64}},
        {DType::Float16, 128, {0, 64, 127, 128}},
        {DType::Float32, 70, {0, 70}},
        {DType::Float32, 70, {0, 5, 70}},
        {DType::Float32, 70, {0, 0, 13, 13, 32, 64, 65, 70, 70}},
        {DType::Float32, 100, {0, 1, 2, 3, 64, 99, 100}},
        {DType::Float32, 512, {0, 256, 300, 512}},
        {DType::Float32, 512, {0, 0, 255, 256, 257, 511, 512, 512}},
        {DType::Float16, 1536, {0, 512, 1024, 1536}},
        {DType::BFloat16, 1536, {0, 100, 1536}},
        {DType::BFloat16, 1536, {0, 0, 511, 700, 700, 1023, 1024, 1500, 1536, 1536}},
        {DType::Float16, 1000, {0, 64, 128, 600, 1000}},
    };
    const std::pair<int64_t, int64_t> layouts[] = {{1, 1}, {0, 0}, {2, 1}, {1, 0}};
    int k = 0;
    for (const Packing &pk : packings) {
      ScanSpec s;
      s.group = "scan: packed sequences";
      s.dtype = pk.dtype;
      s.L = pk.L;
      s.dim = 4;
      s.N = pk.L > 200 ? 4 : 9;
      s.cuSeqlens = pk.cu;
      s.groupsB = layouts[k % 4].first;
      s.groupsC = layouts[k % 4].second;
      ++k;
      add(all(s));
      s.groupsB = s.groupsC = 1;  // the full-chunk path where the chunk allows it
      s.D = true;
      s.lastState = true;
      add(s);
    }
    // A NaN in one sequence stays there (forward and backward): in a sequence with a start inside its chunk (packed
    // path), and in one that ends on a chunk edge (full-chunk path, the carry replaced).
    const std::vector<std::tuple<DType, int64_t, std::vector<int32_t>, int64_t>> nans = {
        {DType::Float32, 70, {0, 20, 45, 45, 70}, 30},
        {DType::BFloat16, 1536, {0, 512, 700, 1536}, 600},
        {DType::Float16, 1536, {0, 512, 1024, 1536}, 600},
    };
    for (const auto &[t, L, cu, at] : nans) {
      ScanSpec s = all(ScanSpec{});
      s.group = "scan: packed sequences";
      s.dtype = t;
      s.L = L;
      s.dim = 2;
      s.N = 5;
      s.groupsB = s.groupsC = 1;
      s.cuSeqlens = cu;
      s.nanAt = at;
      add(s);
    }
    // Random packings: 1 to 64 sequences, lengths 0 to three chunks, cuts on chunk (and 64-step
    // sub-chunk) edges and off them, every dtype, random options and kinds of B / C.
    Rng rng(20261202);
    const DType dtypes[] = {DType::Float32, DType::Float16, DType::BFloat16};
    for (int c = 0; c < 24; ++c) {
      ScanSpec r;
      r.group = "scan: packed sequences (random)";
      r.dtype = dtypes[c % 3];
      const int64_t chunk = r.dtype == DType::Float32 ? 256 : 512;
      const int64_t sequences = 1 + int64_t(rng.next() % 64);
      std::vector<int32_t> lengths;
      int64_t L = 0;
      for (int64_t i = 0; i < sequences; ++i) {
        const int64_t kind = int64_t(rng.next() % 8);
        const int64_t len = kind == 0   ? 0
                            : kind == 1 ? 64 * (1 + int64_t(rng.next() % 4))  // on sub-chunk edges
                            : kind == 2 ? int64_t(rng.next() % (3 * chunk + 1))
                                        : 1 + int64_t(rng.next() % 40);
        lengths.push_back(int32_t(len));
        L += len;
      }
      while (L > 3 * chunk) {  // at most three chunks in all: cheap enough
        const size_t i = size_t(rng.next() % lengths.size());
        L -= lengths[i] - lengths[i] / 2;
        lengths[i] /= 2;
      }
      r.cuSeqlens = {0};
      for (int32_t len : lengths) r.cuSeqlens.push_back(r.cuSeqlens.back() + len);
      r.L = L;
      r.dim = 1 + int64_t(rng.next() % 4);
      r.N = 1 + int64_t(rng.next() % 9);
      r.groupsB = int64_t(rng.next() % 2);
      r.groupsC = rng.next() % 3 == 0 ? 0 : 1;
      auto coin = [&] { return rng.next() % 2 == 0; };
      r.D = coin();
      r.z = coin();
      r.deltaBias = coin();
      r.softplus = coin();
      r.initialState = coin();
      r.lastState = coin() || coin();
      r.dLastState = r.lastState && coin();
      r.dInitialState = coin();
      r.backward = coin() || coin();
      r.checkpoints = r.backward || coin();
      add(r);
    }
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

}  // namespace

EMU_CASES(selectiveScanCases) {
  for (const ScanSpec &s : scanCases()) cases.push_back({s.group, nameOf(s), [s] { return runScanCase(s); }});
}
