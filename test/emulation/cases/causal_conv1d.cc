// Emulation cases of causalConv1d (csrc/ops/causal_conv1d) against the CPU backend.
//
// Step cases (causalConv1dUpdate): three updates in a row, out and the whole state buffer
// compared; the state holds copies of inputs, so it must equal the CPU's bit for bit. Padding rows
// give out = 0 and slots no row names keep their bits. Everything again under a random schedule:
// the same bits.
#include "../harness.h"
#include "ops/causal_conv1d/causal_conv1d.h"

using namespace emutest;

namespace {

std::vector<float> normals(Rng &rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto &x : v) x = float(rng.normal());
  return v;
}

// ---- Step cases -----------------------------------------------------------------------------------------

struct UpdateSpec {
  std::string group;
  DType dtype = DType::Float32;
  int64_t batch = 3, dim = 37, width = 4;
  bool bias = false, silu = false;
  int64_t extraSlots = -1;  // >= 0: stateBatchIndices over batch + extraSlots slots, some rows padding
  int steps = 3;
  uint64_t seed = 1;
};

std::string nameOf(const UpdateSpec &s) {
  std::string name = std::string(dtypeName(s.dtype)) + " b" + std::to_string(s.batch) + " dim" + std::to_string(s.dim) +
                     " W" + std::to_string(s.width);
  std::string opts;
  const std::pair<bool, std::string> flags[] = {
      {s.bias, "bias"},
      {s.silu, "silu"},
      {s.extraSlots >= 0, "stateBatchIndices(" + std::to_string(s.batch + s.extraSlots) + " slots)"}};
  for (const auto &[on, text] : flags)
    if (on) opts += (opts.empty() ? " +" : ",") + text;
  return name + opts + " x" + std::to_string(s.steps);
}

CaseResult runUpdateCase(const UpdateSpec &s) {
  CaseResult r;
  r.group = s.group;
  r.name = nameOf(s);
  Rng rng(s.seed);
  const int64_t B = s.batch, D = s.dim, W = s.width;
  const int64_t slots = s.extraSlots >= 0 ? B + s.extraSlots : B;

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

  const HostTensor weight = HostTensor::of(normals(rng, D * W), DType::Float32);
  HostTensor bias;
  if (s.bias) bias = HostTensor::of(normals(rng, D), DType::Float32);
  const HostTensor initial = HostTensor::of(normals(rng, slots * D * (W - 1)), s.dtype);

  HostTensor cpuState = initial;
  DeviceBuffer gpuState = DeviceBuffer::upload(initial);
  DeviceBuffer gpuStateAgain = DeviceBuffer::upload(initial);  // the same steps under a random schedule
  const DeviceBuffer gWeight = DeviceBuffer::upload(weight), gBias = DeviceBuffer::upload(bias);
  DeviceBuffer gIndices;
  if (!indices.empty()) {
    gIndices = DeviceBuffer(DType::Float32, int64_t(indices.size()));  // int32 and float32 are both 4 bytes
    std::memcpy(gIndices.get(), indices.data(), indices.size() * 4);
  }

  auto params = [&](void *state, const void *x, const float *w, const float *b, const int32_t *idx, void *out) {
    ConvUpdateParams p;
    p.batch = B;
    p.dim = D;
    p.width = W;
    p.stateSlots = slots;
    p.dtype = s.dtype;
    p.convState = state;
    p.x = x;
    p.weight = w;
    p.bias = b;
    p.silu = s.silu;
    p.stateBatchIndices = idx;
    p.out = out;
    return p;
  };

  for (int step = 0; step < s.steps; ++step) {
    const HostTensor x = HostTensor::of(normals(rng, B * D), s.dtype);
    HostTensor outRef = HostTensor::poisoned(s.dtype, B * D);
    cpu::convUpdate(params(cpuState.data(), x.data(), weight.floats(), bias.floats(),
                           indices.empty() ? nullptr : indices.data(), outRef.data()));

    const DeviceBuffer gx = DeviceBuffer::upload(x);
    auto gpuStep = [&](DeviceBuffer &state, const std::string &label) {
      DeviceBuffer out(s.dtype, B * D);
      const ConvUpdateParams p = params(state.get(), gx.get(), gWeight.floats(), gBias.floats(),
                                        static_cast<const int32_t *>(gIndices.get()), out.get());
      runGpu(r, label, [&] { return cuda::convUpdate(p, nullptr); });
      return out.download();
    };
    const std::string at = "step " + std::to_string(step) + " ";
    emu::setSchedule(kAscending);
    const HostTensor out = gpuStep(gpuState, at);
    emu::setSchedule(randomSchedule(s.seed + uint64_t(step)));
    const HostTensor outAgain = gpuStep(gpuStateAgain, at + "(random schedule)");
    emu::setSchedule(kAscending);

    r.checks.push_back(compare(at + "out", out, outRef, forwardTolerance(s.dtype)));
    r.checks.push_back(
        sameBits(at + "out: same bits under a random schedule", outAgain, out,
                 emu::describe(randomSchedule(s.seed + uint64_t(step))) + " vs " + emu::describe(kAscending)));
    if (!indices.empty()) {  // padding rows: out is exactly +0
      Check c;
      c.what = at + "out of padding rows is 0";
      c.pass = true;
      for (int64_t i = 0; i < B * D && c.pass; ++i) {
        if (indices[size_t(i / D)] >= 0) continue;
        if (out.at(i) != 0.0f || std::signbit(out.at(i))) {
          c.pass = false;
          c.detail = describeElement(i, out.at(i), 0.0f);
        }
      }
      r.checks.push_back(c);
    }
  }

  if (W > 1) {
    const HostTensor state = gpuState.download();
    r.checks.push_back(sameBits("state after the steps: the CPU's bits", state, cpuState));
    r.checks.push_back(sameBits("state: same bits under a random schedule", gpuStateAgain.download(), state,
                                "random vs " + emu::describe(kAscending)));
    Check untouched;
    untouched.what = "slots no row names keep their bits";
    untouched.pass = true;
    const size_t slotBytes = size_t(D * (W - 1)) * size_t(dtypeSize(s.dtype));
    for (int64_t slot = 0; slot < slots && untouched.pass; ++slot) {
      if (touched[size_t(slot)]) continue;
      if (std::memcmp(&state.bytes[size_t(slot) * slotBytes], &initial.bytes[size_t(slot) * slotBytes], slotBytes)) {
        untouched.pass = false;
        untouched.detail = "slot " + std::to_string(slot) + " changed";
      }
    }
    r.checks.push_back(untouched);
  }
  return r;
}

std::vector<UpdateSpec> updateCases() {
  std::vector<UpdateSpec> cases;
  uint64_t seed = 7000;
  auto add = [&](UpdateSpec s) {
    s.seed = ++seed;
    cases.push_back(s);
  };
  for (DType t : {DType::Float32, DType::Float16, DType::BFloat16}) {
    const std::string dtype = dtypeName(t);
    // Every width; the options cycle with it, so each appears with short and long windows.
    for (int64_t W = 1; W <= 8; ++W) {
      UpdateSpec s;
      s.group = "conv step " + dtype + ": W 1..8";
      s.dtype = t;
      s.width = W;
      s.bias = W % 2 == 0;
      s.silu = W % 3 != 1;
      s.dim = W == 5 ? 1 : 37;
      add(s);
    }
    // stateBatchIndices with padding rows and more slots than rows; rows spanning several blocks.
    for (int64_t W : {1, 4, 7}) {
      UpdateSpec s;
      s.group = "conv step " + dtype + ": stateBatchIndices and padding rows";
      s.dtype = t;
      s.width = W;
      s.batch = 5;
      s.dim = W == 4 ? 301 : 13;
      s.bias = s.silu = true;
      s.extraSlots = 3;
      add(s);
    }
  }
  return cases;
}

}  // namespace

EMU_CASES(convCases) {
  for (const UpdateSpec &s : updateCases()) cases.push_back({s.group, nameOf(s), [s] { return runUpdateCase(s); }});
}
