// causalConv1d: the descriptors lib/ops/causal-conv1d.ts builds, read into the params of
// causal_conv1d.h, and the native functions that run them.
#include <vector>

#include "../../op/registry.h"
#include "causal_conv1d.h"

namespace ss {
namespace {

void readConvUpdate(op::Descriptor &d, ConvUpdateParams &p) {
  p.batch = d.size("batch");
  p.dim = d.size("dim");
  p.width = d.size("width");
  p.stateSlots = d.size("stateSlots");
  if (p.width < 1 || p.width > 8) internalError(d.env(), "width must be 1..8");
  p.dtype = d.dtype();
  p.silu = d.flag("silu");
  const int64_t B = p.batch, D = p.dim, W = p.width;
  p.convState = d.tensor("convState", {p.stateSlots, D, W - 1}, p.dtype);
  p.x = d.tensor("x", {B, D}, p.dtype);
  p.weight = d.floats("weight", {D, W});
  p.bias = d.floats("bias", {D}, op::Presence::Optional);
  p.out = d.tensor("out", {B, D}, p.dtype);
  d.indices("stateBatchIndices", B, &p.stateBatchIndices, op::Presence::Optional);
  // Slots in range and distinct: lib/ checked the user's array; this copy is what the kernel reads.
  if (p.stateBatchIndices) {
    std::vector<bool> used(size_t(p.stateSlots), false);
    for (int64_t i = 0; i < B; ++i) {
      const int32_t slot = p.stateBatchIndices[i];
      if (slot < 0) continue;
      if (slot >= p.stateSlots || used[size_t(slot)])
        internalError(d.env(), "stateBatchIndices out of range or repeated");
      used[size_t(slot)] = true;
    }
  } else if (p.stateSlots != B) {
    internalError(d.env(), "convState has another row count than x");
  }
}

}  // namespace

SS_REGISTER_OP(convUpdate, "causalConv1dUpdate", ConvUpdateParams, readConvUpdate, cpu::convUpdate, cuda::convUpdate);

}  // namespace ss
