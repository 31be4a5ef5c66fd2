// Packed sequences (cuSeqlens, docs/API.md): what an op's binding reads of them.
#pragma once
#include <cstdint>

#include "../napi_errors.h"
#include "descriptor.h"

namespace ss::op {

// Reads `sequences` (the rows of the op's states: nseq with cuSeqlens, else batch) and the optional
// Int32Array `cuSeqlens` of sequences + 1 offsets into *cuSeqlens (the copy is what the kernels
// read), and re-checks what lib/ checked and the kernels rely on: batch 1, 0 first, L last, never
// decreasing. Returns `sequences`.
inline int64_t readSequences(Descriptor &d, int64_t batch, int64_t L, const int32_t **cuSeqlens) {
  const int64_t sequences = d.size("sequences");
  d.indices("cuSeqlens", sequences + 1, cuSeqlens, Presence::Optional);
  const int32_t *offsets = *cuSeqlens;
  if (offsets) {
    if (batch != 1 || offsets[0] != 0 || offsets[sequences] != L) internalError(d.env(), "bad cuSeqlens");
    for (int64_t i = 0; i < sequences; ++i)
      if (offsets[i] > offsets[i + 1]) internalError(d.env(), "bad cuSeqlens");
  } else if (sequences != batch) {
    internalError(d.env(), "sequences must equal batch without cuSeqlens");
  }
  return sequences;
}

}  // namespace ss::op
