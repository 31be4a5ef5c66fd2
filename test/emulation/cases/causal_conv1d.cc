// Emulation cases of causalConv1d (csrc/ops/causal_conv1d) against the CPU backend.
//
// Sequence cases (causalConv1d, causalConv1dBackward): out and finalState, then every gradient,
// against the CPU backend; the forward again under the mirrored schedule and the backward under a
// random one (the same bits); the backward with `deterministic: true` gives the default's bits (one
// path: the partial sums are always reduced in a fixed order).
//
// Step cases (causalConv1dUpdate): three updates in a row, out and the whole state buffer
// compared; the state holds copies of inputs, so it must equal the CPU's bit for bit. Padding rows
// give out = 0 and slots no row names keep their bits. Everything again under a random schedule:
// the same bits.
#include "../harness.h"
#include "ops/causal_conv1d/causal_conv1d.h"

using namespace emutest;

namespace {

// ---- Sequence cases -------------------------------------------------------------------------------------

struct SeqSpec {
  std::string group;
  DType dtype = DType::Float32;
  int64_t batch = 2, dim = 3, L = 37, width = 4;
  bool bias = false, silu = false, initialState = false, finalState = false, dFinalState = false;
  std::vector<int32_t> cuSeqlens;  // non-empty: packed sequences (batch 1)
  uint64_t seed = 1;
};

std::string nameOf(const SeqSpec &s) {
  std::string name = std::string(dtypeName(s.dtype)) + " b" + std::to_string(s.batch) + " dim" + std::to_string(s.dim) +
                     " L" + std::to_string(s.L) + " W" + std::to_string(s.width);
  std::string opts;
  std::string packing;
  for (const int32_t c : s.cuSeqlens) packing += (packing.empty() ? "" : ",") + std::to_string(c);
  const std::pair<bool, std::string> flags[] = {{s.bias, "bias"},
                                                {s.silu, "silu"},
                                                {s.initialState, "initialState"},
                                                {s.finalState, "finalState"},
                                                {s.dFinalState, "dFinalState"},
                                                {!s.cuSeqlens.empty(), "cuSeqlens[" + packing + "]"}};
  for (const auto &[on, text] : flags)
    if (on) opts += (opts.empty() ? " +" : ",") + text;
  return name + opts;
}

CaseResult runSeqCase(const SeqSpec &s) {
  CaseResult r;
  r.group = s.group;
  r.name = nameOf(s);
  Rng rng(s.seed);
  const int64_t B = s.batch, D = s.dim, L = s.L, W = s.width;
  const int64_t seqs = s.cuSeqlens.empty() ? B : int64_t(s.cuSeqlens.size()) - 1;
  const HostTensor x = HostTensor::of(normals(rng, B * D * L), s.dtype);
  const HostTensor weight = HostTensor::of(normals(rng, D * W), DType::Float32);
  HostTensor bias, initial, dFinal;
  if (s.bias) bias = HostTensor::of(normals(rng, D), DType::Float32);
  if (s.initialState) initial = HostTensor::of(normals(rng, seqs * D * (W - 1)), s.dtype);
  const HostTensor dout = HostTensor::of(normals(rng, B * D * L), s.dtype);
  if (s.dFinalState) dFinal = HostTensor::of(normals(rng, seqs * D * (W - 1)), s.dtype);
  const bool wantFinal = s.finalState && W > 1;

  auto forwardParams = [&](const void *px, const float *w, const float *b, const int32_t *cu, const void *init) {
    ConvForwardParams p;
    p.batch = B;
    p.dim = D;
    p.seqlen = L;
    p.width = W;
    p.dtype = s.dtype;
    p.x = px;
    p.weight = w;
    p.bias = b;
    p.silu = s.silu;
    p.cuSeqlens = cu;
    p.sequences = seqs;
    p.initialState = init;
    return p;
  };

  // The CPU backend (the oracle).
  const int32_t *hostCu = s.cuSeqlens.empty() ? nullptr : s.cuSeqlens.data();
  HostTensor outRef = HostTensor::poisoned(s.dtype, B * D * L), finalRef;
  if (wantFinal) finalRef = HostTensor::poisoned(s.dtype, seqs * D * (W - 1));
  {
    ConvForwardParams p = forwardParams(x.data(), weight.floats(), bias.floats(), hostCu, initial.data());
    p.out = outRef.data();
    p.finalState = finalRef.data();
    cpu::convForward(p);
  }
  HostTensor dxRef = HostTensor::poisoned(s.dtype, B * D * L), dwRef = HostTensor::poisoned(DType::Float32, D * W);
  HostTensor dbRef, dInitRef;
  if (s.bias) dbRef = HostTensor::poisoned(DType::Float32, D);
  if (s.initialState) dInitRef = HostTensor::poisoned(s.dtype, seqs * D * (W - 1));
  {
    ConvBackwardParams q;
    q.fwd = forwardParams(x.data(), weight.floats(), bias.floats(), hostCu, initial.data());
    q.dout = dout.data();
    q.dFinalState = dFinal.data();
    q.dx = dxRef.data();
    q.dweight = dwRef.floats();
    q.dbias = dbRef.floats();
    q.dInitialState = dInitRef.data();
    cpu::convBackward(q);
  }

  // The emulated GPU.
  const DeviceBuffer gx = DeviceBuffer::upload(x), gw = DeviceBuffer::upload(weight), gb = DeviceBuffer::upload(bias);
  const DeviceBuffer gInit = DeviceBuffer::upload(initial), gDout = DeviceBuffer::upload(dout);
  const DeviceBuffer gDFinal = DeviceBuffer::upload(dFinal);
  const DeviceBuffer gCu = DeviceBuffer::upload(HostTensor::ofInt32(s.cuSeqlens));
  const auto *deviceCu = static_cast<const int32_t *>(gCu.get());
  auto forward = [&](const std::string &label) {
    DeviceBuffer out(s.dtype, B * D * L), fin;
    if (wantFinal) fin = DeviceBuffer(s.dtype, seqs * D * (W - 1));
    ConvForwardParams p = forwardParams(gx.get(), gw.floats(), gb.floats(), deviceCu, gInit.get());
    p.out = out.get();
    p.finalState = fin.get();
    runGpu(r, label, [&] { return cuda::convForward(p, nullptr); });
    return std::make_pair(out.download(), fin.download());
  };
  struct Grads {
    HostTensor dx, dw, db, dInit;
  };
  auto backward = [&](bool deterministic, const std::string &label) {
    DeviceBuffer dx(s.dtype, B * D * L), dw(DType::Float32, D * W), db, dInit;
    if (s.bias) db = DeviceBuffer(DType::Float32, D);
    if (s.initialState) dInit = DeviceBuffer(s.dtype, seqs * D * (W - 1));
    ConvBackwardParams q;
    q.fwd = forwardParams(gx.get(), gw.floats(), gb.floats(), deviceCu, gInit.get());
    q.dout = gDout.get();
    q.dFinalState = gDFinal.get();
    q.deterministic = deterministic;
    q.dx = dx.get();
    q.dweight = dw.floats();
    q.dbias = db.floats();
    q.dInitialState = dInit.get();
    runGpu(r, label, [&] { return cuda::convBackward(q, nullptr); });
    return Grads{dx.download(), dw.download(), db.download(), dInit.download()};
  };

  emu::setSchedule(kAscending);
  const auto [out, fin] = forward("forward");
  emu::setSchedule(kDescending);
  const auto [outAgain, finAgain] = forward("forward (mirrored schedule)");
  emu::setSchedule(kAscending);
  const Grads g = backward(false, "backward");
  const Grads det = backward(true, "backward, deterministic");
  emu::setSchedule(randomSchedule(s.seed));
  const Grads again = backward(false, "backward (random schedule)");
  emu::setSchedule(kAscending);

  const Tolerance fwdTol = forwardTolerance(s.dtype), gradTol = gradTolerance(s.dtype);
  const Tolerance gradTol32 = gradTolerance(DType::Float32);
  const std::string schedules = emu::describe(kDescending) + " vs " + emu::describe(kAscending);
  const std::string random = emu::describe(randomSchedule(s.seed)) + " vs " + emu::describe(kAscending);
  r.checks.push_back(compare("out", out, outRef, fwdTol));
  r.checks.push_back(sameBits("out: same bits under another schedule", outAgain, out, schedules));
  if (wantFinal) {
    r.checks.push_back(sameBits("finalState: the CPU's bits (copies of inputs)", fin, finalRef));
    r.checks.push_back(sameBits("finalState: same bits under another schedule", finAgain, fin, schedules));
  }
  auto gradChecks = [&](const std::string &what, HostTensor Grads::*field, const HostTensor &ref, Tolerance tol) {
    if (!ref.given()) return;
    r.checks.push_back(compare(what, g.*field, ref, tol));
    r.checks.push_back(sameBits(what + ": deterministic gives the default's bits", det.*field, g.*field));
    r.checks.push_back(sameBits(what + ": same bits under a random schedule", again.*field, g.*field, random));
  };
  gradChecks("dx", &Grads::dx, dxRef, gradTol);
  gradChecks("dweight", &Grads::dw, dwRef, gradTol32);
  gradChecks("dbias", &Grads::db, dbRef, gradTol32);
  gradChecks("dInitialState", &Grads::dInit, dInitRef, gradTol);
  return r;
}

std::vector<SeqSpec> seqCases() {
  std::vector<SeqSpec> cases;
  uint64_t seed = 8000;
  auto add = [&](SeqSpec s) {
    s.seed = ++seed;
    cases.push_back(s);
  };
  for (DType t : {DType::Float32, DType::Float16, DType::BFloat16}) {
    const std::string dtype = dtypeName(t);
    // Every width, with every option in turn; L from one step to several tiles (512 steps per tile
    // in float32, 1024 in 16-bit), odd (element loads) and multiples of 8 (vector loads).
    const int64_t lengths[] = {1, 37, 2048, 3, 1100, 64, 8, 1030};
    for (int64_t W = 1; W <= 8; ++W) {
      SeqSpec s;
      s.group = "conv " + dtype + ": W 1..8";
      s.dtype = t;
      s.width = W;
      s.L = lengths[W - 1];
      s.dim = s.L > 1000 ? 2 : 3;
      s.bias = W % 2 == 1;
      s.silu = W % 3 != 0;
      s.initialState = W % 2 == 0 || W == 3;
      s.finalState = s.dFinalState = W != 4;
      add(s);
    }
    // All options together; L below W - 1 (the state reaches into initialState at both ends); many
    // short rows sharing a block; a row long enough for several tiles.
    for (int64_t L : {2, 5, 700, 4096}) {
      SeqSpec s;
      s.group = "conv " + dtype + ": all options";
      s.dtype = t;
      s.width = L == 2 ? 8 : 4;
      s.L = L;
      s.batch = L <= 5 ? 3 : 1;
      s.dim = L <= 5 ? 90 : 2;
      s.bias = s.silu = s.initialState = s.finalState = s.dFinalState = true;
      add(s);
    }
    // Packed sequences: empty ones (first, inside, last), sequences shorter than W - 1, one sequence
    // across a tile boundary; with and without states.
    const std::vector<std::vector<int32_t>> packings = {
        {0, 0, 5, 5, 60, 61, 63, 200, 200}, {0, 1200, 1300, 2100}, {0, 3}, {0, 0, 0}};
    for (size_t i = 0; i < packings.size(); ++i) {
      for (bool states : {false, true}) {
        SeqSpec s;
        s.group = "conv " + dtype + ": cuSeqlens";
        s.dtype = t;
        s.cuSeqlens = packings[i];
        s.batch = 1;
        s.L = packings[i].back();
        s.dim = s.L > 1000 ? 2 : 3;
        s.width = i == 2 ? 6 : 4;
        s.bias = s.silu = true;
        s.initialState = s.finalState = s.dFinalState = states;
        add(s);
      }
    }
  }
  // Random combinations: dtype, W, shape, options and packings drawn from a fixed seed.
  Rng pick(8999);
  for (int i = 0; i < 16; ++i) {
    SeqSpec s;
    s.group = "conv: random combinations";
    s.dtype = DType(pick.next() % 3);
    s.width = 1 + int64_t(pick.next() % 8);
    s.bias = pick.next() % 2;
    s.silu = pick.next() % 2;
    s.initialState = pick.next() % 2;
    s.finalState = pick.next() % 2;
    s.dFinalState = pick.next() % 2;
    s.L = int64_t(pick.next() % 1500);
    s.dim = 1 + int64_t(pick.next() % 4);
    if (pick.next() % 2) {  // packed: up to 6 boundaries anywhere in [0, L], sorted (repeats = empty sequences)
      std::vector<int32_t> cuts = {0, int32_t(s.L)};
      for (uint64_t n = pick.next() % 6; n > 0; --n) cuts.push_back(int32_t(pick.next() % uint64_t(s.L + 1)));
      std::sort(cuts.begin(), cuts.end());
      s.cuSeqlens = cuts;
      s.batch = 1;
    } else {
      s.batch = 1 + int64_t(pick.next() % 3);
      if (s.L == 0) s.L = 1;  // L = 0 only with cuSeqlens
    }
    add(s);
  }
  return cases;
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

  const auto [indices, touched] = slotIndices(rng, B, slots, s.extraSlots >= 0);

  const HostTensor weight = HostTensor::of(normals(rng, D * W), DType::Float32);
  HostTensor bias;
  if (s.bias) bias = HostTensor::of(normals(rng, D), DType::Float32);
  const HostTensor initial = HostTensor::of(normals(rng, slots * D * (W - 1)), s.dtype);

  HostTensor cpuState = initial;
  DeviceBuffer gpuState = DeviceBuffer::upload(initial);
  DeviceBuffer gpuStateAgain = DeviceBuffer::upload(initial);  // the same steps under a random schedule
  const DeviceBuffer gWeight = DeviceBuffer::upload(weight), gBias = DeviceBuffer::upload(bias);
  const DeviceBuffer gIndices = DeviceBuffer::upload(HostTensor::ofInt32(indices));

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
    if (!indices.empty()) r.checks.push_back(paddingRowsAreZero(at + "out of padding rows is 0", out, indices, D));
  }

  if (W > 1) {
    const HostTensor state = gpuState.download();
    r.checks.push_back(sameBits("state after the steps: the CPU's bits", state, cpuState));
    r.checks.push_back(sameBits("state: same bits under a random schedule", gpuStateAgain.download(), state,
                                "random vs " + emu::describe(kAscending)));
    r.checks.push_back(
        untouchedSlotsKeepTheirBits(state, initial, touched, size_t(D * (W - 1)) * size_t(dtypeSize(s.dtype))));
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
  for (const SeqSpec &s : seqCases()) cases.push_back({s.group, nameOf(s), [s] { return runSeqCase(s); }});
  for (const UpdateSpec &s : updateCases()) cases.push_back({s.group, nameOf(s), [s] { return runUpdateCase(s); }});
}
