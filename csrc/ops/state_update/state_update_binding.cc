// selectiveStateUpdate: the descriptor lib/ops/state-update.ts builds, read into StateUpdateParams,
// and the native function that runs it.
#include "../../op/registry.h"
#include "state_update.h"

namespace ss {
namespace {

void readStateUpdate(op::Descriptor &d, StateUpdateParams &p) {
  p.batch = d.size("batch");
  p.heads = d.size("heads");
  p.headDim = d.size("headDim");
  p.dstate = d.size("dstate");
  p.groups = d.size("groups");
  p.stateSlots = d.size("stateSlots");
  if (p.groups < 1 || p.heads % p.groups != 0) internalError(d.env(), "groups must divide heads");
  p.dtype = d.dtype();
  p.scalarPerHead = d.flag("scalarPerHead");
  p.dtSoftplus = d.flag("dtSoftplus");
  const int64_t B = p.batch, H = p.heads, P = p.headDim, N = p.dstate;
  // Per head (one scalar each) or per channel of a head.
  const int64_t perHeadP = p.scalarPerHead ? 1 : P;
  p.state = d.floats("state", {p.stateSlots, H, P, N});
  p.x = d.tensor("x", {B, H, P}, p.dtype);
  p.dt = d.tensor("dt", {B, H, perHeadP}, p.dtype);
  p.z = d.tensor("z", {B, H, P}, p.dtype, op::Presence::Optional);
  p.B = d.tensor("B", {B, p.groups, N}, p.dtype);
  p.C = d.tensor("C", {B, p.groups, N}, p.dtype);
  p.A = d.floats("A", {H, perHeadP, p.scalarPerHead ? 1 : N});
  const bool dPerHead = d.flag("dPerHead");
  p.D = d.floats("D", {H, dPerHead ? 1 : P}, op::Presence::Optional);
  p.dStrideHead = dPerHead ? 1 : P;
  p.dStrideP = dPerHead ? 0 : 1;
  p.dtBias = d.floats("dtBias", {H, perHeadP}, op::Presence::Optional);
  p.y = d.tensor("y", {B, H, P}, p.dtype);
  d.stateBatchIndices(B, p.stateSlots, &p.stateBatchIndices, "state");
}

}  // namespace

SS_REGISTER_OP(stateUpdate, "selectiveStateUpdate", StateUpdateParams, readStateUpdate, cpu::stateUpdate,
               cuda::stateUpdate);

}  // namespace ss
