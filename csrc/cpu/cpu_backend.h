// The CPU backend as a whole: the ops are synchronous and multithreaded (thread_pool.h), picked
// per instruction set at run time (isa.h); each op's entry points are declared in its own header
// (csrc/ops/<op>/<op>.h). This is the backend's state and its benchmark support.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "isa.h"

namespace ss::cpu {

const char *activeIsaName();  // baseline, avx2 or avx512
int threadCount();
void setThreadCount(int n);  // throws std::system_error when the system refuses the threads

// What was wrong with the environment variables the CPU backend reads (SELECTIVE_SCAN_NUM_THREADS,
// SELECTIVE_SCAN_CPU_ISA, SELECTIVE_SCAN_HOST_CACHE_LIMIT), one message each; reads them now if
// that has not happened yet. Returns the messages to the first caller in the process only, so that
// they are reported once.
std::vector<std::string> takeEnvironmentWarnings();

// exp2 evaluations per second on all threads (the compute floor of the benchmarks' roofline).
double measureExp2Rate();

// Evaluates `count` exp2s in independent chains, as the scan does, and returns a sum that depends
// on all of them (exp2_rate_cpu.cc).
SS_PER_CPU_ISA(float exp2Work(int64_t count))
inline float exp2Work(int64_t count) { SS_CALL_CPU_ISA(exp2Work, count); }

}  // namespace ss::cpu
