// The CUDA execution model on the CPU: the interface between the fake CUDA headers (which the
// kernels see), the emulator (emulator.cc) and the test driver (driver.cc).
//
// Why this exists: the machines that build and test this project have no GPU, so the CUDA kernels
// of csrc/ would otherwise never run before a user runs them. The emulator compiles the real
// kernel sources with g++ and runs every thread of a block as a cooperative fiber in one OS
// thread. A fiber runs until it reaches a warp collective (__shfl_*_sync, __syncwarp) or a block
// barrier (__syncthreads); it then waits until every thread the collective names has arrived,
// the values are exchanged exactly as the hardware would, and the threads continue. Blocks run
// one after another. So the numbers are those of the real kernel code, in the order the real
// code computes them (up to the host's math library and FMA contraction; see README.md).
//
// On top of running the code it checks what a GPU would fault on or leave undefined: a launch
// configuration the runtime rejects (block size, __launch_bounds__, dynamic shared memory beyond
// the limit the kernel asked for), a misaligned vector load, a collective that not all lanes
// reach or that lanes reach at different places, a barrier that deadlocks, writes outside an
// allocation or outside the dynamic shared memory (guard bytes; further away, inaccessible pages
// make it an "illegal address" of the kernel), a race between blocks (device memory that several
// blocks of one launch touch, unless they all only read it or all only update it atomically: on
// a GPU the blocks run at once, here one after another, so the race is reported rather than left
// to chance), and it fills fresh allocations and shared memory with NaN so that a read of
// something never written shows up in the results.
// The order in which threads and blocks run is a parameter (Schedule): results that change with
// it reveal a missing barrier or a dependence on block order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- CUDA's built-in vector types and the runtime's error and stream types --------------------
// (here rather than in cuda_runtime.h because the launch interface below needs them)

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// The values are CUDA's, so that names printed by the driver match the real runtime's.
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;
typedef struct CUstream_st *cudaStream_t;

namespace emu {

// ---- The emulated device ------------------------------------------------------------------------
// The limits of the GPU the emulator pretends to be: an H100 / H200 (sm_90).
constexpr int kWarpSize = 32;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr size_t kDefaultDynamicSharedBytes = 48 * 1024;  // without cudaFuncSetAttribute
constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;     // sharedMemPerBlockOptin of sm_90
constexpr unsigned kMaxGridX = 0x7fffffffu;
constexpr unsigned kMaxGridYZ = 65535u;

// ---- Scheduling ---------------------------------------------------------------------------------
// The order in which the scheduler resumes the runnable threads of a block after each round of
// collectives; whether the warps of a block advance in lockstep (one collective each per pass) or
// one at a time (a warp runs until it waits at __syncthreads or returns); the order in which the
// blocks of a grid run. A correct kernel gives the same bits under every schedule (float atomics
// aside).
enum class Order { Ascending, Descending, Random };
struct Schedule {
  Order threads = Order::Ascending;
  Order blocks = Order::Ascending;
  bool oneWarpAtATime = false;
  uint64_t seed = 1;  // of Order::Random
};
void setSchedule(const Schedule &schedule);
std::string describe(const Schedule &schedule);

// ---- Faults ---------------------------------------------------------------------------------------
// Records what a GPU would report as an error (or where it would behave undefinedly). Inside a
// kernel it also stops the grid, like a device fault; later launches are skipped until the faults
// are taken, as a faulted CUDA context refuses work.
void fault(const std::string &what);
// The faults since the last call, clearing them (and the "context is faulted" state).
std::vector<std::string> takeFaults();
// Statistics of the launches so far (for the driver's report).
struct Stats {
  uint64_t launches = 0, blocks = 0, threads = 0, collectives = 0;
  uint64_t vectorLoads = 0;  // __ldg of 8 or 16 bytes: evidence that the vectorized paths ran
};
Stats stats();

// ---- Memory ---------------------------------------------------------------------------------------
// Allocations are 256-byte aligned (as cudaMalloc), filled with a NaN pattern, and surrounded by
// guard bytes that checkGuards() verifies: an out-of-bounds write shows up as a fault, an
// out-of-bounds read as NaN in the results.
constexpr uint32_t kPoisonWord = 0x7fff7fffu;  // NaN as float32, and as float16 / bfloat16 halves
void *allocate(size_t bytes);
void release(void *p);  // faults on an unknown pointer or damaged guards
void checkGuards();     // faults for every live allocation whose guards were overwritten
size_t liveAllocations();

// ---- Kernel launches ------------------------------------------------------------------------------
struct LaunchConfig {
  dim3 grid, block;
  size_t sharedBytes;
  cudaStream_t stream;
  // __launch_bounds__'s maximum threads per block of the kernel (0 = none given), extracted from
  // the kernel's definition by the source rewriting (preprocess.mjs).
  int maxThreads;
  const char *kernelName;  // as written at the launch
  const char *file;
  int line;
};

// Validates the configuration as the runtime would (a rejected launch sets the error that
// cudaGetLastError returns and runs nothing), then runs body(context) once per thread.
void runGrid(const void *kernel, const LaunchConfig &config, void (*body)(void *), void *context);

// What `kernel<<<grid, block, shared, stream>>>(args...)` becomes: the arguments are converted to
// the kernel's parameter types once, as the runtime copies them to the device, and every thread
// calls the kernel with them.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), const LaunchConfig &config, Args &&...args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  auto call = [&] { std::apply(kernel, params); };
  runGrid(
      reinterpret_cast<const void *>(kernel), config, [](void *c) { (*static_cast<decltype(call) *>(c))(); }, &call);
}

// The current block's dynamic shared memory (`extern __shared__ T name[];` is rewritten to a
// pointer to it).
void *dynamicSharedMemory();

extern uint64_t gVectorLoads;  // counted by __ldg

// The built-in variables of the running thread; read through the macros of cuda_runtime.h.
extern uint3 gThreadIdx, gBlockIdx;
extern dim3 gBlockDim, gGridDim;

// ---- Collectives ----------------------------------------------------------------------------------
enum class Collective : uint8_t { SyncWarp, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All };
// One lane's part of a warp collective: its value (bits, up to 8 bytes) and its argument (source
// lane, delta, lane mask or predicate). Returns this lane's result once every lane of `mask` has
// arrived. `file`/`line` is the call's source position: lanes must meet at the same one.
uint64_t warpCollective(Collective op, unsigned mask, uint64_t value, int argument, int width, const char *file,
                        int line);
void syncThreads(const char *file, int line);
// Whether the caller is a kernel thread (intrinsics called on the host are a fault).
bool inKernel();

// What atomicAdd (cuda_runtime.h) does: a plain read-modify-write (threads switch only at
// collectives, so nothing can come between), which the race detector records as atomic. For T =
// float, double, int, unsigned, unsigned long long.
template <class T>
T atomicAdd(T *address, T value);

template <class T>
uint64_t toBits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <class T>
T fromBits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace emu
