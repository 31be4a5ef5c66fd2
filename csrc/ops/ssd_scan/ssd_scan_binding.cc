// ssdScan and ssdScanBackward: the descriptors lib/ops/ssd-scan.ts builds, read into
// SsdForwardParams / SsdBackwardParams, and the native functions that run them.
#include <cmath>

#include "../../op/registry.h"
#include "../../op/sequences.h"
#include "ssd_scan.h"

namespace ss {
namespace {

SsdShape readShape(op::Descriptor &d) {
  SsdShape s{d.size("batch"), d.size("seqlen"), d.size("heads"), d.size("headDim"), d.size("groups"), d.size("dstate")};
  if (s.groups < 1 || s.heads % s.groups != 0) internalError(d.env(), "groups must divide heads");
  return s;
}

// The forward's inputs: shared by the forward and the backward descriptors.
void readSsdInputs(op::Descriptor &d, SsdForwardParams &p) {
  p.shape = readShape(d);
  const SsdShape &s = p.shape;
  const int64_t batch = s.batch, L = s.seqlen, H = s.heads, P = s.headDim, G = s.groups, N = s.dstate;
  p.dtype = d.dtype();
  p.x = d.tensor("x", {batch, L, H, P}, p.dtype);
  p.dt = d.tensor("dt", {batch, L, H}, p.dtype);
  p.A = d.floats("A", {H});
  p.B = d.tensor("B", {batch, L, G, N}, p.dtype);
  p.C = d.tensor("C", {batch, L, G, N}, p.dtype);
  p.z = d.tensor("z", {batch, L, H, P}, p.dtype, op::Presence::Optional);
  p.dPerHead = d.flag("dPerHead");
  p.D = d.floats("D", {H, p.dPerHead ? 1 : P}, op::Presence::Optional);
  p.dtBias = d.floats("dtBias", {H}, op::Presence::Optional);
  p.dtSoftplus = d.flag("dtSoftplus");
  const double low = d.number("dtLow"), high = d.number("dtHigh");
  if (std::isnan(low) || std::isnan(high) || low > high) internalError(d.env(), "bad dtLimit");
  p.dtLow = float(low);
  p.dtHigh = float(high);
  p.sequences = op::readSequences(d, batch, L, &p.cuSeqlens);
  p.initialState = d.floats("initialState", {p.sequences, H, P, N}, op::Presence::Optional);
  p.chunkLength = d.size("chunkLength");
  if (p.chunkLength < 1) internalError(d.env(), "chunkLength must be positive");
}

int64_t checkpointCount(const SsdForwardParams &p) { return (p.shape.seqlen + p.chunkLength - 1) / p.chunkLength; }

void readSsdForward(op::Descriptor &d, SsdForwardParams &p) {
  readSsdInputs(d, p);
  const SsdShape &s = p.shape;
  p.out = d.tensor("out", {s.batch, s.seqlen, s.heads, s.headDim}, p.dtype);
  p.lastState = d.floats("lastState", {p.sequences, s.heads, s.headDim, s.dstate}, op::Presence::Optional);
  p.checkpoints =
      d.floats("checkpoints", {s.batch, s.heads, checkpointCount(p), s.dstate, s.headDim}, op::Presence::Optional);
}

void readSsdBackward(op::Descriptor &d, SsdBackwardParams &p) {
  readSsdInputs(d, p.fwd);
  const SsdForwardParams &f = p.fwd;
  const SsdShape &s = f.shape;
  const int64_t batch = s.batch, L = s.seqlen, H = s.heads, P = s.headDim, G = s.groups, N = s.dstate;
  p.fwd.checkpoints = d.floats("checkpoints", {batch, H, checkpointCount(f), N, P});
  p.dout = d.tensor("dout", {batch, L, H, P}, f.dtype);
  p.dLastState = d.floats("dLastState", {f.sequences, H, P, N}, op::Presence::Optional);
  p.deterministic = d.flag("deterministic");
  p.dx = d.tensor("dx", {batch, L, H, P}, f.dtype);
  p.ddt = d.tensor("ddt", {batch, L, H}, f.dtype);
  p.dA = d.floats("dA", {H});
  p.dB = d.tensor("dB", {batch, L, G, N}, f.dtype);
  p.dC = d.tensor("dC", {batch, L, G, N}, f.dtype);
  p.dz = f.z ? d.tensor("dz", {batch, L, H, P}, f.dtype) : nullptr;
  p.dD = f.D ? d.floats("dD", {H, f.dPerHead ? 1 : P}) : nullptr;
  p.ddtBias = f.dtBias ? d.floats("ddtBias", {H}) : nullptr;
  p.dInitialState = f.initialState ? d.floats("dInitialState", {f.sequences, H, P, N}) : nullptr;
}

}  // namespace

// ssdChunkLength({ device, batch, seqlen, heads, headDim, groups, dstate }): the checkpoint interval.
SS_REGISTER_QUERY(
    ssdChunkLength, "ssdScan", SsdShape, [](op::Descriptor &d, SsdShape &s) { s = readShape(d); }, cpu::ssdChunkLength,
    cuda::ssdChunkLength);
SS_REGISTER_OP(ssdForward, "ssdScan", SsdForwardParams, readSsdForward, cpu::ssdForward, cuda::ssdForward);
SS_REGISTER_OP(ssdBackward, "ssdScanBackward", SsdBackwardParams, readSsdBackward, cpu::ssdBackward, cuda::ssdBackward);

}  // namespace ss
