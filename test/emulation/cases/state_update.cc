// Emulation cases of selectiveStateUpdate (csrc/ops/state_update) against the CPU backend: two
// updates in a row, y and the whole state buffer compared; padding rows give y = 0 and slots no
// row names keep their bits.
#include "../harness.h"
#include "ops/state_update/state_update.h"

using namespace emutest;

namespace {

// ---- Step cases -----------------------------------------------------------------------------------------

enum class Form { Channels, Heads, HeadsScalar };

struct StepSpec {
  std::string group;
  Form form = Form::Channels;
  DType dtype = DType::Float32;
  int64_t batch = 2, H = 4, P = 1, N = 16, G = 1;
  bool D = false, dPerHead = false, z = false, dtBias = false, softplus = false;
  int64_t extraSlots = -1;  // >= 0: stateBatchIndices over batch + extraSlots slots, some rows padding
  bool misaligned = false;  // B and C one element past an aligned address: the element-wise kernel
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
      {s.extraSlots >= 0, "stateBatchIndices(" + std::to_string(s.batch + s.extraSlots) + " slots)"},
      {s.misaligned, "B/C misaligned"}};
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
  auto normal = [&](int64_t n) { return normals(rng, n); };
  auto uniform = [&](int64_t n, double a, double b) { return uniforms(rng, n, a, b); };
  const auto [indices, touched] = slotIndices(rng, B, slots, s.extraSlots >= 0);

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
  const DeviceBuffer dIndices = DeviceBuffer::upload(HostTensor::ofInt32(indices));
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
    // Misaligned: one element of offset, which no 16-byte (or 8-byte) vector access tolerates.
    const int64_t shift = s.misaligned ? 1 : 0;
    auto uploadShifted = [&](const HostTensor &h) {
      DeviceBuffer d(h.dtype, h.n + shift);
      std::memcpy(static_cast<char *>(d.get()) + shift * dtypeSize(h.dtype), h.bytes.data(), h.bytes.size());
      return d;
    };
    const DeviceBuffer gB = uploadShifted(Bp), gC = uploadShifted(Cp);
    const void *gBp = static_cast<const char *>(gB.get()) + shift * dtypeSize(s.dtype);
    const void *gCp = static_cast<const char *>(gC.get()) + shift * dtypeSize(s.dtype);
    auto gpuStep = [&](DeviceBuffer &state, const std::string &label) {
      DeviceBuffer y(s.dtype, B * H * P);
      const StateUpdateParams p =
          params(state.floats(), gx.get(), gdt.get(), gz.get(), gBp, gCp, dA.floats(), dD.floats(), dBias.floats(),
                 static_cast<const int32_t *>(dIndices.get()), y.get());
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
    if (!indices.empty()) r.checks.push_back(paddingRowsAreZero(at + "y of padding rows is 0", y, indices, H * P));
  }

  const HostTensor state = gpuState.download();
  r.checks.push_back(compare("state after the steps", state, cpuState, stateTol));
  r.checks.push_back(sameBits("state: same bits under a random schedule", gpuStateAgain.download(), state,
                              "random vs " + emu::describe(kAscending)));
  r.checks.push_back(untouchedSlotsKeepTheirBits(state, initial, touched, size_t(H * P * N) * 4));
  return r;
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
    // The option grid: every form at N from 1 to 256 (one lane per row at N <= 16, up to 16 at
    // 256; N not a multiple of 4 takes the element-wise kernel with a partial last chunk), with
    // padding rows, every option; and the element-wise kernel at N = 16 and 128 through misaligned B/C.
    for (Form form : {Form::Channels, Form::Heads, Form::HeadsScalar}) {
      for (int64_t N : {1, 3, 4, 16, 17, 128, 256}) {
        StepSpec s;
        s.group = "step " + dtype + ": option grid";
        s.dtype = t;
        s.form = form;
        s.batch = 4;
        s.H = form == Form::Channels ? 6 : 4;
        s.P = form == Form::Channels ? 1 : 3;
        s.N = N;
        s.G = 2;
        s.D = s.z = s.dtBias = true;
        s.dPerHead = form == Form::HeadsScalar;
        s.softplus = N % 2 == 0;
        s.extraSlots = N == 3 || N == 17 || N == 128 ? 2 : -1;
        add(s);
      }
      for (int64_t N : {16, 128}) {
        StepSpec s;
        s.group = "step " + dtype + ": option grid";
        s.dtype = t;
        s.form = form;
        s.batch = 3;
        s.H = 4;
        s.P = form == Form::Channels ? 1 : 2;
        s.N = N;
        s.G = 2;
        s.D = s.z = s.dtBias = s.softplus = true;
        s.misaligned = true;
        add(s);
      }
    }
  }
  return cases;
}

}  // namespace

EMU_CASES(stateUpdateCases) {
  for (const StepSpec &s : stepCases()) cases.push_back({s.group, nameOf(s), [s] { return runStepCase(s); }});
}
