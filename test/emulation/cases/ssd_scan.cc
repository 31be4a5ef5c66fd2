// Emulation cases of the state space dual scan (csrc/ops/ssd_scan) against the CPU backend:
// forward (out, lastState, checkpoints restored by the backward) and backward (default and
// deterministic), over the option grid: dtypes, D per head or per position, z, dtBias, softplus,
// dtLimit, states, groups, packed sequences with empty ones, L not a multiple of the interval, odd
// P and N. The checkpoints are each backend's own (their intervals differ), so they are checked
// through the backward that reads them, and bit for bit across schedules.
#include "../harness.h"
#include "ops/ssd_scan/ssd_scan.h"

using namespace emutest;

namespace {

struct SsdSpec {
  std::string group;
  DType dtype = DType::Float32;
  int64_t batch = 1, L = 16, H = 2, P = 4, G = 1, N = 8;
  bool D = false, dPerHead = false, z = false, dtBias = false, softplus = false, dtLimit = false;
  bool initialState = false, lastState = false, dLastState = false;
  std::vector<int32_t> cuSeqlens;  // empty: none (batch rows)
  int64_t nanAt = -1;              // >= 0: x is NaN at this step (batch row 0, head 0, position 0)
  bool backward = true;
  bool checkpoints = true;
  uint64_t seed = 1;
};

std::string nameOf(const SsdSpec &s) {
  std::string name = std::string(dtypeName(s.dtype)) + " b" + std::to_string(s.batch) + " L" + std::to_string(s.L) +
                     " H" + std::to_string(s.H) + " P" + std::to_string(s.P) + " G" + std::to_string(s.G) + " N" +
                     std::to_string(s.N);
  std::string seqs;
  for (int32_t v : s.cuSeqlens) seqs += (seqs.empty() ? "" : ",") + std::to_string(v);
  std::string opts;
  const std::pair<bool, std::string> flags[] = {{s.D, s.dPerHead ? "D(H)" : "D(H,P)"},
                                                {s.z, "z"},
                                                {s.dtBias, "dtBias"},
                                                {s.softplus, "softplus"},
                                                {s.dtLimit, "dtLimit"},
                                                {s.initialState, "initialState"},
                                                {s.lastState, "lastState"},
                                                {s.dLastState, "dLastState"},
                                                {!s.cuSeqlens.empty(), "cuSeqlens[" + seqs + "]"},
                                                {s.nanAt >= 0, "NaN in x at step " + std::to_string(s.nanAt)},
                                                {!s.backward, "forwardOnly"},
                                                {!s.checkpoints, "noCheckpoints"}};
  for (const auto &[on, text] : flags)
    if (on) opts += (opts.empty() ? " +" : ",") + text;
  return name + opts;
}

int64_t sequencesOf(const SsdSpec &s) { return s.cuSeqlens.empty() ? s.batch : int64_t(s.cuSeqlens.size()) - 1; }

struct SsdInputs {
  HostTensor x, dt, A, B, C, z, D, dtBias, initialState, dout, dLastState, cuSeqlens;
};

SsdInputs makeInputs(const SsdSpec &s) {
  Rng rng(s.seed);
  auto normal = [&](int64_t n, double scale = 1.0) { return normals(rng, n, scale); };
  auto uniform = [&](int64_t n, double a, double b) { return uniforms(rng, n, a, b); };
  const int64_t rows = s.batch * s.L, seqs = sequencesOf(s), state = seqs * s.H * s.P * s.N;
  SsdInputs in;
  std::vector<float> x = normal(rows * s.H * s.P);
  if (s.nanAt >= 0) x[size_t(s.nanAt * s.H * s.P)] = NAN;
  in.x = HostTensor::of(x, s.dtype);
  // dt before bias / softplus: with softplus, some values far on each side of the threshold.
  in.dt = HostTensor::of(s.softplus ? uniform(rows * s.H, -4, 1) : uniform(rows * s.H, 0.01, 0.3), s.dtype);
  in.A = HostTensor::of(
      [&] {
        std::vector<float> a(static_cast<size_t>(s.H));
        for (auto &v : a) v = float(-std::exp(rng.uniform(-1, 1.5)));
        return a;
      }(),
      DType::Float32);
  in.B = HostTensor::of(normal(rows * s.G * s.N, 0.5), s.dtype);
  in.C = HostTensor::of(normal(rows * s.G * s.N, 0.5), s.dtype);
  if (s.z) in.z = HostTensor::of(normal(rows * s.H * s.P), s.dtype);
  if (s.D) in.D = HostTensor::of(normal(s.dPerHead ? s.H : s.H * s.P), DType::Float32);
  if (s.dtBias) in.dtBias = HostTensor::of(s.softplus ? uniform(s.H, -1, 1) : uniform(s.H, 0, 0.1), DType::Float32);
  if (s.initialState) in.initialState = HostTensor::of(normal(state), DType::Float32);
  in.dout = HostTensor::of(normal(rows * s.H * s.P), s.dtype);
  if (s.dLastState) in.dLastState = HostTensor::of(normal(state), DType::Float32);
  in.cuSeqlens = HostTensor::ofInt32(s.cuSeqlens);
  return in;
}

// The inputs' pointers, on the host or on the emulated device.
struct Ptrs {
  const void *x, *dt, *A, *B, *C, *z, *D, *dtBias, *initialState, *dout, *dLastState, *cuSeqlens;
};

SsdForwardParams forwardParams(const SsdSpec &s, const Ptrs &in, int64_t chunkLength) {
  SsdForwardParams p;
  p.shape = {s.batch, s.L, s.H, s.P, s.G, s.N};
  p.dtype = s.dtype;
  p.x = in.x;
  p.dt = in.dt;
  p.A = static_cast<const float *>(in.A);
  p.B = in.B;
  p.C = in.C;
  p.z = in.z;
  p.D = static_cast<const float *>(in.D);
  p.dPerHead = s.dPerHead;
  p.dtBias = static_cast<const float *>(in.dtBias);
  p.dtSoftplus = s.softplus;
  p.dtLow = s.dtLimit ? 0.02f : 0.0f;
  p.dtHigh = s.dtLimit ? 0.2f : INFINITY;
  p.cuSeqlens = static_cast<const int32_t *>(in.cuSeqlens);
  p.sequences = sequencesOf(s);
  p.initialState = static_cast<const float *>(in.initialState);
  p.chunkLength = chunkLength;
  return p;
}

// Allocates the backward's outputs (given which inputs exist) through alloc(name, dtype, n).
template <class Alloc>
void bindGradients(const SsdSpec &s, SsdBackwardParams &bp, Alloc &&alloc) {
  const int64_t rows = s.batch * s.L;
  bp.dx = alloc("dx", s.dtype, rows * s.H * s.P);
  bp.ddt = alloc("ddt", s.dtype, rows * s.H);
  bp.dA = static_cast<float *>(alloc("dA", DType::Float32, s.H));
  bp.dB = alloc("dB", s.dtype, rows * s.G * s.N);
  bp.dC = alloc("dC", s.dtype, rows * s.G * s.N);
  if (s.z) bp.dz = alloc("dz", s.dtype, rows * s.H * s.P);
  if (s.D) bp.dD = static_cast<float *>(alloc("dD", DType::Float32, s.dPerHead ? s.H : s.H * s.P));
  if (s.dtBias) bp.ddtBias = static_cast<float *>(alloc("ddtBias", DType::Float32, s.H));
  if (s.initialState)
    bp.dInitialState = static_cast<float *>(alloc("dInitialState", DType::Float32, sequencesOf(s) * s.H * s.P * s.N));
}

struct CpuResult {
  HostTensor out, lastState;
  NamedTensors grads;
};

CpuResult cpuSsd(const SsdSpec &s, const SsdInputs &in) {
  CpuResult r;
  const Ptrs ptr{in.x.data(),    in.dt.data(),         in.A.data(),
                 in.B.data(),    in.C.data(),          in.z.data(),
                 in.D.data(),    in.dtBias.data(),     in.initialState.data(),
                 in.dout.data(), in.dLastState.data(), in.cuSeqlens.data()};
  const SsdShape shape{s.batch, s.L, s.H, s.P, s.G, s.N};
  const int64_t T = cpu::ssdChunkLength(shape), chunks = (s.L + T - 1) / T;
  SsdForwardParams p = forwardParams(s, ptr, T);
  r.out = HostTensor::poisoned(s.dtype, s.batch * s.L * s.H * s.P);
  r.lastState = HostTensor::poisoned(DType::Float32, sequencesOf(s) * s.H * s.P * s.N);
  HostTensor checkpoints = HostTensor::poisoned(DType::Float32, s.batch * s.H * chunks * s.N * s.P);
  p.out = r.out.data();
  p.lastState = r.lastState.floats();
  p.checkpoints = checkpoints.floats();
  cpu::ssdForward(p);
  if (!s.backward) return r;
  SsdBackwardParams bp;
  bp.fwd = p;
  bp.dout = ptr.dout;
  bp.dLastState = static_cast<const float *>(ptr.dLastState);
  r.grads.reserve(10);  // pointers into the tensors must stay valid
  bindGradients(s, bp, [&](const char *name, DType t, int64_t n) {
    r.grads.emplace_back(name, HostTensor::poisoned(t, n));
    return r.grads.back().second.data();
  });
  cpu::ssdBackward(bp);
  return r;
}

struct DeviceInputs {
  DeviceBuffer x, dt, A, B, C, z, D, dtBias, initialState, dout, dLastState, cuSeqlens;
  explicit DeviceInputs(const SsdInputs &in)
      : x(DeviceBuffer::upload(in.x)),
        dt(DeviceBuffer::upload(in.dt)),
        A(DeviceBuffer::upload(in.A)),
        B(DeviceBuffer::upload(in.B)),
        C(DeviceBuffer::upload(in.C)),
        z(DeviceBuffer::upload(in.z)),
        D(DeviceBuffer::upload(in.D)),
        dtBias(DeviceBuffer::upload(in.dtBias)),
        initialState(DeviceBuffer::upload(in.initialState)),
        dout(DeviceBuffer::upload(in.dout)),
        dLastState(DeviceBuffer::upload(in.dLastState)),
        cuSeqlens(DeviceBuffer::upload(in.cuSeqlens)) {}
  Ptrs pointers() const {
    return {x.get(),      dt.get(),           A.get(),    B.get(),          C.get(),        z.get(), D.get(),
            dtBias.get(), initialState.get(), dout.get(), dLastState.get(), cuSeqlens.get()};
  }
};

struct GpuForward {
  DeviceBuffer out, lastState, checkpoints;
  int64_t chunkLength = 0;
};

GpuForward gpuForward(CaseResult &r, const SsdSpec &s, const DeviceInputs &dev, const std::string &label) {
  GpuForward g;
  const SsdShape shape{s.batch, s.L, s.H, s.P, s.G, s.N};
  g.chunkLength = cuda::ssdChunkLength(shape);
  SsdForwardParams p = forwardParams(s, dev.pointers(), g.chunkLength);
  g.out = DeviceBuffer(s.dtype, s.batch * s.L * s.H * s.P);
  p.out = g.out.get();
  if (s.lastState) {
    g.lastState = DeviceBuffer(DType::Float32, sequencesOf(s) * s.H * s.P * s.N);
    p.lastState = g.lastState.floats();
  }
  if (s.checkpoints) {
    const int64_t chunks = (s.L + g.chunkLength - 1) / g.chunkLength;
    g.checkpoints = DeviceBuffer(DType::Float32, s.batch * s.H * chunks * s.N * s.P);
    p.checkpoints = g.checkpoints.floats();
  }
  runGpu(r, label, [&] { return cuda::ssdForward(p, nullptr); });
  return g;
}

NamedTensors gpuBackward(CaseResult &r, const SsdSpec &s, const DeviceInputs &dev, const GpuForward &fwd,
                         bool deterministic, const std::string &label) {
  const Ptrs ptr = dev.pointers();
  SsdBackwardParams bp;
  bp.fwd = forwardParams(s, ptr, fwd.chunkLength);
  bp.fwd.checkpoints = fwd.checkpoints.floats();
  bp.dout = ptr.dout;
  bp.dLastState = static_cast<const float *>(ptr.dLastState);
  bp.deterministic = deterministic;
  GradientBuffers buffers;
  bindGradients(s, bp, buffers);
  runGpu(r, label, [&] { return cuda::ssdBackward(bp, nullptr); });
  return buffers.download();
}

CaseResult runSsdCase(const SsdSpec &s) {
  CaseResult r;
  r.group = s.group;
  r.name = nameOf(s);
  const SsdInputs in = makeInputs(s);
  const CpuResult ref = cpuSsd(s, in);
  const DeviceInputs dev(in);
  const auto compare = [&](const std::string &what, const HostTensor &got, const HostTensor &want, Tolerance tol) {
    return s.nanAt >= 0 ? compareFinite(what, got, want, tol) : emutest::compare(what, got, want, tol);
  };

  if (s.group.find("chunked form") != std::string::npos) {  // these cases exist for that kernel
    const SsdForwardParams p =
        forwardParams(s, dev.pointers(), cuda::ssdChunkLength({s.batch, s.L, s.H, s.P, s.G, s.N}));
    const bool chunked = cuda::ssdChunkedSupports(p);
    r.checks.push_back({"runs the chunked (tensor-core) forward", chunked, NAN, NAN, NAN, NAN,
                        chunked ? "" : "ssdChunkedSupports says no: the recurrent kernel would run"});
  }
  emu::setSchedule(kAscending);
  const GpuForward fwd = gpuForward(r, s, dev, "forward");
  r.checks.push_back(compare("forward out", fwd.out.download(), ref.out, forwardTolerance(s.dtype)));
  if (s.lastState)
    r.checks.push_back(
        compare("forward lastState", fwd.lastState.download(), ref.lastState, forwardTolerance(DType::Float32)));
  emu::setSchedule(kDescending);
  const GpuForward again = gpuForward(r, s, dev, "forward (mirrored schedule)");
  const std::string mirrored = emu::describe(kDescending) + " vs " + emu::describe(kAscending);
  r.checks.push_back(
      sameBits("forward out: same bits under another schedule", again.out.download(), fwd.out.download(), mirrored));
  if (s.checkpoints)
    r.checks.push_back(sameBits("forward checkpoints: same bits under another schedule", again.checkpoints.download(),
                                fwd.checkpoints.download(), mirrored));
  if (!s.backward) return r;

  // Only dB, dC and ddt (and ddtBias, their sum) go through float atomics by default.
  checkBackward(
      r, ref.grads, s.seed,
      [&](bool deterministic, const std::string &label) { return gpuBackward(r, s, dev, fwd, deterministic, label); },
      compare,
      [](const std::string &name) { return name == "dB" || name == "dC" || name == "ddt" || name == "ddtBias"; });
  return r;
}

std::vector<SsdSpec> ssdCases() {
  std::vector<SsdSpec> cases;
  uint64_t seed = 5000;
  auto add = [&](SsdSpec s) {
    s.seed = ++seed;
    cases.push_back(s);
  };
  auto all = [](SsdSpec s) {  // every option on
    s.D = s.z = s.dtBias = s.softplus = s.dtLimit = s.initialState = s.lastState = s.dLastState = true;
    return s;
  };

  // Sizes: P and N odd and even, below and above a warp (lane groups of 1 to 32 lanes, 1 to 8
  // states per lane), L below, at and past one interval and not a multiple of it.
  {
    struct Size {
      int64_t L, P, N;
    };
    for (const Size z : {Size{1, 3, 1}, Size{7, 3, 3}, Size{40, 17, 17}, Size{70, 5, 64}, Size{33, 4, 128},
                         Size{20, 3, 256}, Size{130, 8, 16}, Size{9, 64, 33}, Size{5, 128, 2}}) {
      SsdSpec s;
      s.group = "ssd float32: sizes";
      s.batch = 2;
      s.L = z.L;
      s.P = z.P;
      s.N = z.N;
      s.H = 2;
      add(all(s));
      s.batch = 1;
      s.H = 3;
      add(s);  // no options
    }
  }

  // Each option alone, then together, with heads sharing a group.
  {
    SsdSpec base;
    base.group = "ssd float32: options";
    base.batch = 2;
    base.L = 50;
    base.H = 4;
    base.G = 2;
    base.P = 6;
    base.N = 12;
    for (int option = 0; option < 11; ++option) {
      SsdSpec s = base;
      switch (option) {
        case 0: s.D = true; break;
        case 1: s.D = s.dPerHead = true; break;
        case 2: s.z = true; break;
        case 3: s.dtBias = true; break;
        case 4: s.softplus = true; break;
        case 5: s.dtLimit = true; break;
        case 6: s.softplus = s.dtBias = s.dtLimit = true; break;
        case 7: s.initialState = true; break;
        case 8: s.lastState = true; break;
        case 9: s.lastState = s.dLastState = true; break;
        case 10: s.initialState = s.lastState = s.dLastState = s.z = true; break;
      }
      add(s);
    }
    SsdSpec s = all(base);
    s.dPerHead = true;
    s.G = 1;
    add(s);
    s.G = 4;
    add(s);
  }

  // Packed sequences: boundaries inside intervals and on them, empty sequences first, inside and
  // last, one sequence over the whole row.
  {
    const std::vector<std::vector<int32_t>> packings = {
        {0, 70}, {0, 5, 70}, {0, 0, 13, 13, 40, 70}, {0, 8, 16, 64, 65, 70, 70}, {0, 1, 2, 3, 69, 70}};
    for (const auto &cu : packings) {
      SsdSpec s;
      s.group = "ssd float32: packed sequences";
      s.L = 70;
      s.H = 2;
      s.P = 5;
      s.N = 17;
      s.cuSeqlens = cu;
      add(all(s));
      s.N = 128;  // an interval of 16 steps: more boundaries on interval ends
      s.z = s.softplus = false;
      add(s);
    }
    // A NaN in the middle sequence stays there (forward and backward), as on the CPU backend.
    SsdSpec s = all(SsdSpec{});
    s.group = "ssd float32: packed sequences";
    s.L = 70;
    s.P = 5;
    s.N = 17;
    s.cuSeqlens = {0, 20, 45, 45, 70};
    s.nanAt = 30;
    add(s);
    s = SsdSpec{};
    s.group = "ssd float32: packed sequences";
    s.L = 0;
    s.cuSeqlens = {0, 0, 0};
    s.initialState = s.lastState = s.dLastState = true;
    add(s);
  }

  // 16-bit inputs.
  for (DType t : {DType::Float16, DType::BFloat16}) {
    const std::string group = std::string("ssd ") + dtypeName(t);
    for (const auto &[L, N] : {std::pair<int64_t, int64_t>{1, 8}, {37, 3}, {100, 64}}) {
      SsdSpec s;
      s.group = group;
      s.dtype = t;
      s.batch = 2;
      s.L = L;
      s.H = 4;
      s.G = 2;
      s.P = 7;
      s.N = N;
      add(all(s));
    }
    SsdSpec s;
    s.group = group;
    s.dtype = t;
    s.L = 45;
    s.P = 3;
    s.N = 17;
    s.cuSeqlens = {0, 10, 10, 45};
    add(all(s));
  }

  // 16-bit inputs on the chunked form (ssd_scan_chunked.cu: chunks of 64 steps, tensor-core
  // products): L below one chunk, at it, past it and over several; N padded to 16 and N giving
  // checkpoint intervals of 32, 16 and 8 steps (the state walks them inside a chunk); P over one,
  // two and three tiles of 16 positions; heads sharing groups; every option. The backward reads
  // the chunked forward's checkpoints, so its gradients check them.
  for (DType t : {DType::Float16, DType::BFloat16}) {
    struct Shape {
      int64_t batch, L, H, G, P, N;
    };
    const std::string group = std::string("ssd ") + dtypeName(t) + ": chunked form";
    int k = 0;
    for (const Shape z : {Shape{1, 5, 2, 1, 7, 16}, Shape{2, 64, 4, 2, 16, 3}, Shape{1, 100, 2, 2, 20, 64},
                          Shape{1, 200, 3, 1, 9, 128}, Shape{2, 130, 2, 1, 40, 33}, Shape{1, 77, 4, 4, 5, 100}}) {
      SsdSpec s;
      s.group = group;
      s.dtype = t;
      s.batch = z.batch;
      s.L = z.L;
      s.H = z.H;
      s.G = z.G;
      s.P = z.P;
      s.N = z.N;
      add(all(s));
      s.dPerHead = k % 2 == 0;  // the other D layout, and options one by one
      s.D = s.z = s.dtBias = s.softplus = s.dtLimit = s.initialState = s.lastState = s.dLastState = false;
      switch (k++) {
        case 0: s.z = true; break;
        case 1: s.initialState = s.lastState = true; break;
        case 2: s.dtBias = s.softplus = true; break;
        case 3: s.D = true; break;
        case 4: s.lastState = s.dLastState = true; break;
        case 5: s.dtLimit = s.z = true; break;
      }
      add(s);
    }
    SsdSpec s;  // forward only, no checkpoints: the last state alone
    s.group = group;
    s.dtype = t;
    s.L = 150;
    s.P = 16;
    s.N = 32;
    s.backward = s.checkpoints = false;
    s.initialState = s.lastState = true;
    add(s);
  }

  // Forward only, without checkpoints (saveForBackward false).
  {
    SsdSpec s;
    s.group = "ssd: forward without checkpoints";
    s.batch = 2;
    s.L = 90;
    s.P = 3;
    s.N = 40;
    s.backward = false;
    s.checkpoints = false;
    s.initialState = s.lastState = true;
    add(s);
  }

  // Packed sequences on the chunked form (each sequence walked in the pieces of the 64-step chunks
  // inside it): boundaries inside chunks and on chunk edges, on checkpoint interval ends (T = 32,
  // 16, 8) and inside intervals, empty sequences first, inside and last, sequences of one step,
  // shorter than a chunk and over more than two, 16 sequences in 200 steps, one over the whole
  // row; per-sequence initial and last states, and the gradients through the chunked forward's
  // checkpoints.
  for (DType t : {DType::Float16, DType::BFloat16}) {
    struct Packing {
      int64_t L, H, G, P, N;
      std::vector<int32_t> cu;
    };
    const std::string group = std::string("ssd ") + dtypeName(t) + ": chunked form, packed sequences";
    int k = 0;
    for (const Packing &z :
         {Packing{300, 2, 1, 20, 16, {0, 10, 64, 64, 70, 230, 256, 300}},
          Packing{150, 2, 2, 7, 64, {0, 0, 3, 67, 128, 150, 150}}, Packing{100, 4, 2, 9, 100, {0, 1, 8, 40, 41, 100}},
          Packing{130, 2, 1, 33, 33, {0, 130}},
          Packing{200, 2, 1, 17, 8, {0, 2, 2, 9, 30, 31, 47, 64, 65, 90, 127, 128, 129, 150, 170, 171, 200}}}) {
      SsdSpec s;
      s.group = group;
      s.dtype = t;
      s.L = z.L;
      s.H = z.H;
      s.G = z.G;
      s.P = z.P;
      s.N = z.N;
      s.cuSeqlens = z.cu;
      s = all(s);
      add(s);
      s.dPerHead = k % 2 == 0;  // the other D layout, fewer options
      s.z = s.softplus = s.dtLimit = s.dLastState = false;
      if (k++ % 2) s.dtBias = false;
      add(s);
    }
    // A NaN in x at a sequence's first step, inside the 16-step window 16..31 of the chunk [0, 64):
    // pieces are staged apart, so the steps 16..29 of the sequence before keep finite outputs (a
    // mask inside the whole chunk would reach them through 0 x NaN in G X).
    SsdSpec s = all(SsdSpec{});
    s.group = group;
    s.dtype = t;
    s.L = 70;
    s.P = 5;
    s.N = 17;
    s.cuSeqlens = {0, 30, 70};
    s.nanAt = 30;
    add(s);
    s = SsdSpec{};  // forward only, no checkpoints: the last states alone
    s.group = group;
    s.dtype = t;
    s.L = 150;
    s.P = 16;
    s.N = 32;
    s.cuSeqlens = {0, 64, 100, 100, 150};
    s.backward = s.checkpoints = false;
    s.initialState = s.lastState = true;
    add(s);
  }
  return cases;
}

}  // namespace

EMU_CASES(ssdScanCases) {
  for (const SsdSpec &s : ssdCases()) cases.push_back({s.group, nameOf(s), [s] { return runSsdCase(s); }});
}
