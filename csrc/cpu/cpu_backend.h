// The CPU backend: the same ops as the CUDA backend, synchronous, multithreaded over
// (batch row, channel range) tasks. It is the fallback where there is no GPU and the oracle the
// GPU code is tested against.
#pragma once
#include <cstdint>
#include <string>

#include "../common/scan_params.h"

namespace ss::cpu {

std::string isaName();  // the instruction set whose kernels run: baseline, avx2 or avx512
int threadCount();
void setThreadCount(int n);

int64_t forwardChunkLength(const ScanShape &shape);
void scanForward(const ScanForwardParams &p);
void scanBackward(const ScanBackwardParams &p);
void stateUpdate(const StateUpdateParams &p);

// exp2 evaluations per second on all threads (the compute floor of the roofline).
double measureExp2Rate();

}  // namespace ss::cpu
