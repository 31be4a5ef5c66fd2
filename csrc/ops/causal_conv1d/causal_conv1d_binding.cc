// causalConv1d: the descriptors lib/ops/causal-conv1d.ts builds, read into the params of
// causal_conv1d.h, and the native functions that run them.

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
  d.stateBatchIndices(B, p.stateSlots, &p.stateBatchIndices, "convState");
}

// The forward's inputs: shared by the forward and the backward descriptors.
void readConvInputs(op::Descriptor &d, ConvForwardParams &p) {
  p.batch = d.size("batch");
  p.dim = d.size("dim");
  p.seqlen = d.size("seqlen");
  p.width = d.size("width");
  if (p.width < 1 || p.width > 8) internalError(d.env(), "width must be 1..8");
  p.dtype = d.dtype();
  p.silu = d.flag("silu");
  const int64_t B = p.batch, D = p.dim, L = p.seqlen, W = p.width;
  p.x = d.tensor("x", {B, D, L}, p.dtype);
  p.weight = d.floats("weight", {D, W});
  p.bias = d.floats("bias", {D}, op::Presence::Optional);
  // Packed sequences: the offsets must be what lib/ checked (the copy is what the kernels read).
  p.sequences = d.size("sequences");
  d.indices("cuSeqlens", p.sequences + 1, &p.cuSeqlens, op::Presence::Optional);
  if (p.cuSeqlens) {
    if (B != 1 || p.cuSeqlens[0] != 0 || p.cuSeqlens[p.sequences] != L) internalError(d.env(), "bad cuSeqlens");
    for (int64_t i = 0; i < p.sequences; ++i)
      if (p.cuSeqlens[i] > p.cuSeqlens[i + 1]) internalError(d.env(), "bad cuSeqlens");
  } else if (p.sequences != B) {
    internalError(d.env(), "sequences must equal batch without cuSeqlens");
  }
  p.initialState = d.tensor("initialState", {p.sequences, D, W - 1}, p.dtype, op::Presence::Optional);
}

void readConvForward(op::Descriptor &d, ConvForwardParams &p) {
  readConvInputs(d, p);
  p.out = d.tensor("out", {p.batch, p.dim, p.seqlen}, p.dtype);
  p.finalState = d.tensor("finalState", {p.sequences, p.dim, p.width - 1}, p.dtype, op::Presence::Optional);
}

void readConvBackward(op::Descriptor &d, ConvBackwardParams &p) {
  readConvInputs(d, p.fwd);
  const ConvForwardParams &f = p.fwd;
  const int64_t B = f.batch, D = f.dim, L = f.seqlen, W = f.width;
  p.dout = d.tensor("dout", {B, D, L}, f.dtype);
  p.dFinalState = d.tensor("dFinalState", {f.sequences, D, W - 1}, f.dtype, op::Presence::Optional);
  p.deterministic = d.flag("deterministic");
  p.dx = d.tensor("dx", {B, D, L}, f.dtype);
  p.dweight = d.floats("dweight", {D, W});
  p.dbias = f.bias ? d.floats("dbias", {D}) : nullptr;
  p.dInitialState = f.initialState ? d.tensor("dInitialState", {f.sequences, D, W - 1}, f.dtype) : nullptr;
}

}  // namespace

SS_REGISTER_OP(convUpdate, "causalConv1dUpdate", ConvUpdateParams, readConvUpdate, cpu::convUpdate, cuda::convUpdate);
SS_REGISTER_OP(convForward, "causalConv1d", ConvForwardParams, readConvForward, cpu::convForward, cuda::convForward);
SS_REGISTER_OP(convBackward, "causalConv1dBackward", ConvBackwardParams, readConvBackward, cpu::convBackward,
               cuda::convBackward);

}  // namespace ss
