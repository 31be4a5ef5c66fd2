// The CPU backend's kernels: the interface between the driver (cpu_backend.cc), which splits an op
// into tasks and reduces partial sums in a fixed order, and the vectorised loops
// (scan_kernels.cc), compiled once per instruction set.
//
// Layout of the work: a task is one batch row b and a range of consecutive channels [d0, d1) that
// share one B group and one C group. The kernel walks the range in blocks of kLanes channels, one
// channel per SIMD lane, and walks time in chunks of chunkLength steps, carrying each channel's
// state (N floats) from chunk to chunk. Nothing of size L x N is ever stored: the forward writes
// the state at the end of each chunk (the checkpoints), and the backward recomputes one chunk at a
// time from them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/scan_params.h"

namespace ss::cpu {

struct Task {
  int64_t b = 0, d0 = 0, d1 = 0;
  int64_t groupB = 0, groupC = 0;  // groups of the channels (0 when fixed)
  int64_t partition = 0;           // index of this channel range among all ranges of the op
};

// Sums over channels or over batch rows that the backward leaves for the driver to finish, so
// that their order never depends on which thread ran which task.
struct BackwardPartials {
  float *dB = nullptr, *dC = nullptr;            // varying: [partition][batch][N][L] (this task's channels)
  float *dA = nullptr;                           // [batch][dim][N]
  float *dBFixed = nullptr, *dCFixed = nullptr;  // [batch][dim][N]
  float *dD = nullptr, *ddeltaBias = nullptr;    // [batch][dim]
};

struct Kernels {
  const char *isa;
  int lanes;
  size_t (*forwardScratchBytes)(const ScanForwardParams &p, int64_t maxChannels);
  void (*forward)(const ScanForwardParams &p, const Task &task, void *scratch);
  size_t (*backwardScratchBytes)(const ScanBackwardParams &p, int64_t maxChannels);
  void (*backward)(const ScanBackwardParams &p, const Task &task, const BackwardPartials &partials, void *scratch);
  // Rows [begin, end) of batch * heads * headDim.
  void (*stateUpdate)(const StateUpdateParams &p, int64_t begin, int64_t end);
  // Evaluates `count` exp2s (in independent chains, as the scan does) and returns a sum that
  // depends on all of them: the benchmark's measure of this core's exp2 rate.
  float (*exp2Work)(int64_t count);
};

namespace baseline {
extern const Kernels kernels;
}
namespace avx2 {
extern const Kernels kernels;
}
namespace avx512 {
extern const Kernels kernels;
}

}  // namespace ss::cpu
