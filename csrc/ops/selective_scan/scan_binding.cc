// selectiveScan and selectiveScanBackward: the descriptors lib/ops/selective-scan.ts builds, read
// into ScanForwardParams / ScanBackwardParams, and the native functions that run them.
#include <string>

#include "../../op/registry.h"
#include "../../op/sequences.h"
#include "scan.h"

namespace ss {
namespace {

// B or C: { kind: 'fixed', data } (dim, N) float32, or { kind: 'varying', groups, data }
// (batch, groups, N, L) in the input dtype.
Projection readProjection(op::Descriptor &d, const char *key, const ScanShape &s, DType dtype) {
  op::Descriptor projection = d.nested(key);
  const std::string kind = projection.string("kind");
  if (kind == "fixed") return Projection::fixed(projection.floats("data", {s.dim, s.dstate}));
  if (kind != "varying") internalError(d.env(), std::string(key) + ": bad projection kind");
  const int64_t groups = projection.size("groups");
  if (groups < 1 || s.dim % groups != 0) internalError(d.env(), std::string(key) + ": bad group count");
  return Projection::varyingGroups(projection.tensor("data", {s.batch, groups, s.dstate, s.seqlen}, dtype), groups);
}

ScanShape readShape(op::Descriptor &d) { return {d.size("batch"), d.size("dim"), d.size("seqlen"), d.size("dstate")}; }

// The forward's inputs: shared by the forward and the backward descriptors.
void readScanInputs(op::Descriptor &d, ScanForwardParams &p) {
  p.shape = readShape(d);
  const int64_t batch = p.shape.batch, dim = p.shape.dim, L = p.shape.seqlen, N = p.shape.dstate;
  p.dtype = d.dtype();
  p.u = d.tensor("u", {batch, dim, L}, p.dtype);
  p.delta = d.tensor("delta", {batch, dim, L}, p.dtype);
  p.z = d.tensor("z", {batch, dim, L}, p.dtype, op::Presence::Optional);
  p.A = d.floats("A", {dim, N});
  p.B = readProjection(d, "B", p.shape, p.dtype);
  p.C = readProjection(d, "C", p.shape, p.dtype);
  p.D = d.floats("D", {dim}, op::Presence::Optional);
  p.deltaBias = d.floats("deltaBias", {dim}, op::Presence::Optional);
  p.sequences = op::readSequences(d, batch, L, &p.cuSeqlens);
  p.initialState = d.floats("initialState", {p.sequences, dim, N}, op::Presence::Optional);
  p.deltaSoftplus = d.flag("deltaSoftplus");
  // The backend's scanChunkLength(shape), which lib/ asked for before allocating the checkpoints
  // (the CUDA kernels refuse any other value; the CPU backend works with any interval).
  p.chunkLength = d.size("chunkLength");
  if (p.chunkLength < 1) internalError(d.env(), "chunkLength must be positive");
}

int64_t checkpointCount(const ScanForwardParams &p) { return (p.shape.seqlen + p.chunkLength - 1) / p.chunkLength; }

void readScanForward(op::Descriptor &d, ScanForwardParams &p) {
  readScanInputs(d, p);
  const int64_t batch = p.shape.batch, dim = p.shape.dim, N = p.shape.dstate;
  p.out = d.tensor("out", {batch, dim, p.shape.seqlen}, p.dtype);
  p.lastState = d.floats("lastState", {p.sequences, dim, N}, op::Presence::Optional);
  p.checkpoints = d.floats("checkpoints", {batch, dim, checkpointCount(p), N}, op::Presence::Optional);
}

void readScanBackward(op::Descriptor &d, ScanBackwardParams &p) {
  readScanInputs(d, p.fwd);
  const ScanForwardParams &f = p.fwd;
  const int64_t batch = f.shape.batch, dim = f.shape.dim, L = f.shape.seqlen, N = f.shape.dstate;
  auto gradientOf = [&](const char *key, const Projection &proj) -> void * {
    return proj.varying() ? d.tensor(key, {batch, proj.groups, N, L}, f.dtype) : d.floats(key, {dim, N});
  };
  p.fwd.checkpoints = d.floats("checkpoints", {batch, dim, checkpointCount(f), N});
  p.dout = d.tensor("dout", {batch, dim, L}, f.dtype);
  p.dLastState = d.floats("dLastState", {f.sequences, dim, N}, op::Presence::Optional);
  p.deterministic = d.flag("deterministic");
  p.du = d.tensor("du", {batch, dim, L}, f.dtype);
  p.ddelta = d.tensor("ddelta", {batch, dim, L}, f.dtype);
  p.dz = f.z ? d.tensor("dz", {batch, dim, L}, f.dtype) : nullptr;
  p.dA = d.floats("dA", {dim, N});
  p.dB = gradientOf("dB", f.B);
  p.dC = gradientOf("dC", f.C);
  p.dD = f.D ? d.floats("dD", {dim}) : nullptr;
  p.ddeltaBias = f.deltaBias ? d.floats("ddeltaBias", {dim}) : nullptr;
  p.dInitialState = f.initialState ? d.floats("dInitialState", {f.sequences, dim, N}) : nullptr;
}

}  // namespace

// scanChunkLength({ device, batch, dim, seqlen, dstate }): the checkpoint interval of that backend.
SS_REGISTER_QUERY(
    scanChunkLength, "selectiveScan", ScanShape, [](op::Descriptor &d, ScanShape &s) { s = readShape(d); },
    cpu::scanChunkLength, cuda::scanChunkLength);
SS_REGISTER_OP(scanForward, "selectiveScan", ScanForwardParams, readScanForward, cpu::scanForward, cuda::scanForward);
SS_REGISTER_OP(scanBackward, "selectiveScanBackward", ScanBackwardParams, readScanBackward, cpu::scanBackward,
               cuda::scanBackward);

}  // namespace ss
