// Tests of the emulator itself: small kernels, in CUDA syntax and preprocessed like the real ones,
// each either computing something whose exact value is known (shuffles, ballots, barriers) or
// committing one error the emulator exists to catch (a divergent shuffle, a lane that leaves its
// warp behind, a missing barrier, a misaligned vector load, a write out of bounds, a launch the
// runtime rejects, a race between blocks). A check that never fires would make the kernel tests weaker than they look;
// these prove that each one does.
#include <cuda_runtime.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda/mma.cuh"
#include "selftest.h"

namespace emutest {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// Each lane gets its lane index through every kind of shuffle; out[kind * 64 + thread].
__global__ void __launch_bounds__(64) shuffleKernel(int *out) {
  const int lane = int(threadIdx.x) % 32;
  const int t = int(threadIdx.x);
  int scan = lane + 1;  // inclusive prefix sum of 1..32 by shfl_up
  for (int offset = 1; offset < 32; offset *= 2) {
    const int earlier = __shfl_up_sync(kFull, scan, offset);
    if (lane >= offset) scan += earlier;
  }
  out[0 * 64 + t] = scan;                                      // (lane + 1)(lane + 2) / 2
  out[1 * 64 + t] = __shfl_down_sync(kFull, lane * 10, 3);     // lane + 3 < 32 ? (lane + 3) * 10 : lane * 10
  out[2 * 64 + t] = __shfl_xor_sync(kFull, lane, 5);           // lane ^ 5
  out[3 * 64 + t] = __shfl_sync(kFull, lane * 7, 31 - lane);   // (31 - lane) * 7
  out[4 * 64 + t] = int(__ballot_sync(kFull, lane % 3 == 0));  // 0x49249249
  float sum = float(lane);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFull, sum, offset);
  out[5 * 64 + t] = int(sum);  // 496
}

// Lanes 0-15 and 16-31 meet at different shuffles: undefined on the hardware.
__global__ void divergentShuffleKernel(int *out) {
  const int lane = int(threadIdx.x) % 32;
  int v = lane;
  if (lane < 16)
    v = __shfl_xor_sync(kFull, v, 1);
  else
    v = __shfl_xor_sync(kFull, v, 2);
  out[threadIdx.x] = v;
}

// Lane 0 returns before a full-warp shuffle that names it.
__global__ void exitedLaneKernel(int *out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_down_sync(kFull, int(threadIdx.x), 1);
}

// Warp 1 skips the barrier the others wait at.
__global__ void skippedBarrierKernel(int *out) {
  if (threadIdx.x / 32 != 1) __syncthreads();
  out[threadIdx.x] = 1;
}

// Thread 0 writes shared memory that thread 63 (another warp) reads without a barrier between:
// the value read depends on the order the threads run in.
__global__ void missingBarrierKernel(float *out) {
  extern __shared__ float sharedMemory[];
  if (threadIdx.x == 0) sharedMemory[0] = 42.0f;
  // __syncthreads() belongs here.
  if (threadIdx.x == 63) out[0] = sharedMemory[0];
}

// The same with the barrier: 42 under every schedule.
__global__ void withBarrierKernel(float *out) {
  extern __shared__ float sharedMemory[];
  if (threadIdx.x == 0) sharedMemory[0] = 42.0f;
  __syncthreads();
  if (threadIdx.x == 63) out[0] = sharedMemory[0];
}

// Each warp writes shared memory and reads what the other warp wrote, with shuffles in between but
// no __syncthreads: warps in lockstep hide the race (each has written before either reads), one
// warp at a time exposes it.
__global__ void crossWarpKernel(float *out) {
  extern __shared__ float sharedMemory[];
  float v = float(threadIdx.x);
  v += __shfl_xor_sync(kFull, v, 1);
  sharedMemory[threadIdx.x] = v;
  v += __shfl_xor_sync(kFull, v, 2);
  // __syncthreads() belongs here.
  out[threadIdx.x] = sharedMemory[(threadIdx.x + 32) % 64] + 0.0f * v;
}

// A 16-byte vector load from an address that is only 4-byte aligned.
__global__ void misalignedLoadKernel(const float *in, float *out) {
  const uint4 v = __ldg(reinterpret_cast<const uint4 *>(in + 1));
  out[threadIdx.x] = float(v.x);
}

// Writes one element past the end of `out` (n elements).
__global__ void outOfBoundsKernel(float *out, int n) {
  if (int(threadIdx.x) <= n) out[threadIdx.x] = 1.0f;
}

// Writes far past the end of `out`: into the fence after the allocation.
__global__ void wildWriteKernel(float *out) {
  if (threadIdx.x == 3) out[5000] = 1.0f;
}

// Writes one float past its dynamic shared memory.
__global__ void sharedOverflowKernel(int floats) {
  extern __shared__ float sharedMemory[];
  if (threadIdx.x == 0) sharedMemory[floats] = 1.0f;
}

// Reads shared memory that nothing wrote.
__global__ void uninitialisedSharedKernel(float *out) {
  extern __shared__ float sharedMemory[];
  out[0] = sharedMemory[5];
}

// Static shared memory: one object per block, shared by its threads.
__global__ void staticSharedKernel(int *out) {
  __shared__ int counter[1];
  if (threadIdx.x == 0) counter[0] = 0;
  __syncthreads();
  atomicAdd(&counter[0], 1);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = counter[0];
}

__global__ void __launch_bounds__(128) boundedKernel(int *out) { out[threadIdx.x] = 1; }

// Every block adds to the same 64 sums: with atomics, as the backward's default mode does.
__global__ void atomicSumsKernel(float *sums) { atomicAdd(&sums[threadIdx.x], float(blockIdx.x + 1)); }

// The same with a plain `+=`: the same sums when blocks run one after another, lost updates when
// they run at once on a GPU.
__global__ void plainSumsKernel(float *sums) { sums[threadIdx.x] += float(blockIdx.x + 1); }

// Each block reads what the next block writes.
__global__ void readNeighbourKernel(float *data) {
  if (threadIdx.x == 0) {
    const float next = data[(blockIdx.x + 1) % gridDim.x];
    data[blockIdx.x] = next + 1.0f;
  }
}

// Each block reads an element that other blocks add to atomically.
__global__ void readAtomicSumKernel(float *sums, float *out) {
  if (threadIdx.x == 0) {
    atomicAdd(&sums[0], 1.0f);
    out[blockIdx.x] = sums[0];
  }
}

// What the kernels do without racing: every block reads the same inputs, writes its own 2-byte
// elements (neighbours of other blocks' in the same 4 bytes), and reads back and rewrites its own
// partial sums (as the deterministic backward's blocks do).
__global__ void ownElementsKernel(const float *in, short *halves, float *partials) {
  const int b = int(blockIdx.x), t = int(threadIdx.x);
  if (t == 0) halves[b] = short(in[0] + in[63]);
  partials[b * 64 + t] = in[t];
  __syncthreads();
  partials[b * 64 + t] += in[63 - t];
}

// One m16n8k16 product of known 16-bit matrices through csrc/cuda/mma.cuh: every lane gathers its
// fragments from A (16 x 16, row-major), B (16 x 8, row-major here) and C (16 x 8) by the PTX ISA's
// formulas, written out here independently of the emulator's model, and writes its part of D.
template <ss::DType DT>
__global__ void mmaKernel(const uint16_t *A, const uint16_t *B, const float *C, float *D) {
  const int lane = int(threadIdx.x), g = lane >> 2, q = lane & 3;
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int r = 0; r < 4; ++r) {
    const int row = g + (r & 1) * 8, col = 2 * q + (r >> 1) * 8;  // a[1], a[3]: row + 8; a[2], a[3]: col + 8
    a[r] = ss::cuda::packPair(A[row * 16 + col], A[row * 16 + col + 1]);
  }
  for (int r = 0; r < 2; ++r) {
    const int k = 2 * q + r * 8;
    b[r] = ss::cuda::packPair(B[k * 8 + g], B[(k + 1) * 8 + g]);
  }
  for (int i = 0; i < 4; ++i) c[i] = C[(g + (i >> 1) * 8) * 8 + 2 * q + (i & 1)];
  ss::cuda::mmaM16N8K16<DT>(d, a, b, c);
  for (int i = 0; i < 4; ++i) D[(g + (i >> 1) * 8) * 8 + 2 * q + (i & 1)] = d[i];
}

struct Recorder {
  std::vector<SelfTestResult> &results;
  void add(const std::string &name, bool pass, const std::string &detail) { results.push_back({name, pass, detail}); }
};

std::string join(const std::vector<std::string> &xs) {
  std::string s;
  for (const auto &x : xs) s += (s.empty() ? "" : " | ") + x;
  return s.empty() ? "(no fault)" : s;
}

// Whether one of the faults contains `needle`.
bool mentions(const std::vector<std::string> &faults, const std::string &needle) {
  for (const auto &f : faults)
    if (f.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

void runSelfTests(std::vector<SelfTestResult> &results) {
  Recorder r{results};
  emu::takeFaults();
  int *ints = nullptr;
  float *floats = nullptr;
  cudaMalloc(&ints, 64 * 6 * sizeof(int));
  cudaMalloc(&floats, 256 * sizeof(float));

  {  // Exact results of the collectives.
    shuffleKernel<<<1, 64>>>(ints);
    std::vector<std::string> wrong;
    for (int t = 0; t < 64; ++t) {
      const int lane = t % 32;
      const int expected[6] = {(lane + 1) * (lane + 2) / 2,
                               lane + 3 < 32 ? (lane + 3) * 10 : lane * 10,
                               lane ^ 5,
                               (31 - lane) * 7,
                               int(0x49249249u),
                               496};
      for (int k = 0; k < 6; ++k)
        if (ints[k * 64 + t] != expected[k])
          wrong.push_back("kind " + std::to_string(k) + " thread " + std::to_string(t) + ": " +
                          std::to_string(ints[k * 64 + t]) + " != " + std::to_string(expected[k]));
    }
    const auto faults = emu::takeFaults();
    r.add("shuffles, ballot and butterfly sums give the hardware's values", wrong.empty() && faults.empty(),
          wrong.empty() ? join(faults) : wrong[0]);
  }
  {  // The tensor cores' m16n8k16 product (emulated): D = A B + C with the PTX ISA's fragment layout.
    // Small integers (exact in both types), no symmetry: a transposed or shifted fragment changes D.
    uint16_t *A = nullptr, *B = nullptr;
    float *C = nullptr, *D = nullptr;
    cudaMalloc(&A, 256 * sizeof(uint16_t));
    cudaMalloc(&B, 128 * sizeof(uint16_t));
    cudaMalloc(&C, 128 * sizeof(float));
    cudaMalloc(&D, 128 * sizeof(float));
    float a[16][16], b[16][8];
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 16; ++k) a[i][k] = float((i * 5 + k * 3 + i * k) % 11 - 5);
    for (int k = 0; k < 16; ++k)
      for (int j = 0; j < 8; ++j) b[k][j] = float((k * 7 + j * 2 + k * j * 3) % 13 - 6);
    for (int j = 0; j < 128; ++j) C[j] = float(j % 9) * 0.5f - 2.0f;
    std::string wrong;
    for (int bf16 = 0; bf16 < 2; ++bf16) {
      for (int i = 0; i < 256; ++i)
        A[i] = bf16 ? ss::floatToBfloat16(a[i / 16][i % 16]) : ss::floatToHalf(a[i / 16][i % 16]);
      for (int i = 0; i < 128; ++i)
        B[i] = bf16 ? ss::floatToBfloat16(b[i / 8][i % 8]) : ss::floatToHalf(b[i / 8][i % 8]);
      if (bf16)
        mmaKernel<ss::DType::BFloat16><<<1, 32>>>(A, B, C, D);
      else
        mmaKernel<ss::DType::Float16><<<1, 32>>>(A, B, C, D);
      for (int i = 0; i < 16 && wrong.empty(); ++i)
        for (int j = 0; j < 8 && wrong.empty(); ++j) {
          float expected = C[i * 8 + j];
          for (int k = 0; k < 16; ++k) expected += a[i][k] * b[k][j];
          if (D[i * 8 + j] != expected)
            wrong = std::string(bf16 ? "bf16" : "f16") + " D[" + std::to_string(i) + "][" + std::to_string(j) +
                    "] = " + std::to_string(D[i * 8 + j]) + ", expected " + std::to_string(expected);
        }
    }
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    cudaFree(D);
    const auto faults = emu::takeFaults();
    r.add("mma.sync m16n8k16 (f16, bf16) computes A B + C with the PTX ISA's fragment layout",
          wrong.empty() && faults.empty(), wrong.empty() ? join(faults) : wrong);
  }
  {
    divergentShuffleKernel<<<1, 32>>>(ints);
    const auto faults = emu::takeFaults();
    r.add("a divergent shuffle is a fault", mentions(faults, "divergent warp collective"), join(faults));
  }
  {
    exitedLaneKernel<<<1, 32>>>(ints);
    const auto faults = emu::takeFaults();
    r.add("a shuffle waiting for a lane that returned is a deadlock", mentions(faults, "deadlock"), join(faults));
  }
  {
    skippedBarrierKernel<<<1, 96>>>(ints);
    const auto faults = emu::takeFaults();
    r.add("a __syncthreads that one warp skips is a deadlock", mentions(faults, "deadlock"), join(faults));
  }
  {
    // Without the barrier the result depends on the schedule; with it, it does not.
    float seen[2][2];
    for (int withBarrier = 0; withBarrier < 2; ++withBarrier) {
      for (int s = 0; s < 2; ++s) {
        emu::Schedule schedule;
        schedule.threads = s == 0 ? emu::Order::Ascending : emu::Order::Descending;
        emu::setSchedule(schedule);
        floats[0] = -1.0f;
        if (withBarrier)
          withBarrierKernel<<<1, 64, 4>>>(floats);
        else
          missingBarrierKernel<<<1, 64, 4>>>(floats);
        seen[withBarrier][s] = floats[0];
      }
    }
    emu::setSchedule({});
    const auto faults = emu::takeFaults();
    const bool detected = seen[0][0] == 42.0f && std::isnan(seen[0][1]);
    const bool stable = seen[1][0] == 42.0f && seen[1][1] == 42.0f;
    r.add("a missing barrier changes the result between schedules (and the barrier fixes it)",
          detected && stable && faults.empty(),
          "without: " + std::to_string(seen[0][0]) + " / " + std::to_string(seen[0][1]) +
              "; with: " + std::to_string(seen[1][0]) + " / " + std::to_string(seen[1][1]) + "; " + join(faults));
  }
  {
    // The race of crossWarpKernel: hidden in lockstep, exposed one warp at a time.
    bool nanSeen[2] = {false, false};
    for (int serial = 0; serial < 2; ++serial) {
      emu::Schedule schedule;
      schedule.oneWarpAtATime = serial == 1;
      emu::setSchedule(schedule);
      crossWarpKernel<<<1, 64, 64 * sizeof(float)>>>(floats);
      for (int i = 0; i < 64; ++i) nanSeen[serial] = nanSeen[serial] || std::isnan(floats[i]);
    }
    emu::setSchedule({});
    const auto faults = emu::takeFaults();
    r.add("a missing __syncthreads between warps is exposed by running one warp at a time",
          !nanSeen[0] && nanSeen[1] && faults.empty(),
          std::string("lockstep: ") + (nanSeen[0] ? "NaN read" : "no NaN") +
              "; one warp at a time: " + (nanSeen[1] ? "NaN read" : "no NaN") + "; " + join(faults));
  }
  {
    float *small = nullptr;
    cudaMalloc(&small, 10 * sizeof(float));
    wildWriteKernel<<<1, 32>>>(small);
    cudaFree(small);
    const auto faults = emu::takeFaults();
    r.add("a write far out of bounds is an illegal address of the kernel, not a crash",
          mentions(faults, "illegal address") && mentions(faults, "thread 3"), join(faults));
  }
  {
    misalignedLoadKernel<<<1, 32>>>(floats, floats + 64);
    const auto faults = emu::takeFaults();
    r.add("a misaligned 16-byte __ldg is a fault", mentions(faults, "misaligned __ldg"), join(faults));
  }
  {
    float *small = nullptr;
    cudaMalloc(&small, 10 * sizeof(float));
    outOfBoundsKernel<<<1, 32>>>(small, 10);
    emu::checkGuards();
    cudaFree(small);
    const auto faults = emu::takeFaults();
    r.add("a write past the end of an allocation is a fault", mentions(faults, "out of bounds"), join(faults));
  }
  {
    sharedOverflowKernel<<<1, 32, 64>>>(16);
    const auto faults = emu::takeFaults();
    r.add("a write past the dynamic shared memory is a fault", mentions(faults, "outside its 64 bytes"), join(faults));
  }
  {
    floats[0] = 0.0f;
    uninitialisedSharedKernel<<<1, 32, 64>>>(floats);
    const auto faults = emu::takeFaults();
    r.add("shared memory never written reads as NaN", std::isnan(floats[0]) && faults.empty(),
          std::to_string(floats[0]) + "; " + join(faults));
  }
  {
    staticSharedKernel<<<3, 64>>>(ints);
    const auto faults = emu::takeFaults();
    const bool ok = ints[0] == 64 && ints[1] == 64 && ints[2] == 64;
    r.add(
        "static __shared__ is one object per block", ok && faults.empty(),
        std::to_string(ints[0]) + "," + std::to_string(ints[1]) + "," + std::to_string(ints[2]) + "; " + join(faults));
  }
  {
    boundedKernel<<<1, 256>>>(ints);
    const cudaError_t e = cudaGetLastError();
    const auto faults = emu::takeFaults();
    r.add("a block larger than __launch_bounds__ is rejected", e == cudaErrorLaunchOutOfResources,
          std::string(cudaGetErrorName(e)) + "; " + join(faults));
  }
  {
    uninitialisedSharedKernel<<<1, 32, 64 * 1024>>>(floats);
    const cudaError_t rejected = cudaGetLastError();
    emu::takeFaults();
    cudaFuncSetAttribute(uninitialisedSharedKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
    uninitialisedSharedKernel<<<1, 32, 64 * 1024>>>(floats);
    const cudaError_t accepted = cudaGetLastError();
    const auto faults = emu::takeFaults();
    r.add("more than 48 KB of dynamic shared memory needs cudaFuncSetAttribute",
          rejected == cudaErrorInvalidValue && accepted == cudaSuccess && faults.empty(),
          std::string(cudaGetErrorName(rejected)) + " then " + cudaGetErrorName(accepted) + "; " + join(faults));
  }
  {
    // The race detector: blocks may share memory only by reading it, or only by atomics.
    float *sums = nullptr;
    cudaMalloc(&sums, 64 * sizeof(float));
    cudaMemset(sums, 0, 64 * sizeof(float));
    atomicSumsKernel<<<8, 64>>>(sums);
    const bool sumsRight = sums[0] == 36.0f && sums[63] == 36.0f;
    auto faults = emu::takeFaults();
    r.add("atomics from every block are not a race", sumsRight && faults.empty(),
          std::to_string(sums[0]) + "; " + join(faults));

    plainSumsKernel<<<8, 64>>>(sums);
    faults = emu::takeFaults();
    r.add("a plain += from several blocks on the same element is a race",
          mentions(faults,
                   "race between blocks: read of 4 bytes at byte 0 of an allocation of 256 bytes, which block "
                   "(0,0,0) read and wrote") &&
              mentions(faults, "plainSumsKernel") && mentions(faults, "block (1,0,0) thread 0"),
          join(faults));

    // Under the descending block order the first block to run is (7,0,0).
    emu::Schedule descending;
    descending.blocks = emu::Order::Descending;
    emu::setSchedule(descending);
    plainSumsKernel<<<8, 64>>>(sums);
    emu::setSchedule({});
    faults = emu::takeFaults();
    r.add("the race is found under any block order", mentions(faults, "which block (7,0,0) read and wrote"),
          join(faults));

    readNeighbourKernel<<<4, 32>>>(sums);
    faults = emu::takeFaults();
    r.add("reading what another block writes is a race", mentions(faults, "race between blocks: write of 4 bytes"),
          join(faults));

    readAtomicSumKernel<<<4, 32>>>(sums, floats);
    faults = emu::takeFaults();
    r.add("a plain read of what other blocks update atomically is a race",
          mentions(faults, "race between blocks: atomic update of 4 bytes at byte 0") && mentions(faults, "read"),
          join(faults));

    short *halves = nullptr;
    float *partials = nullptr;
    cudaMalloc(&halves, 8 * sizeof(short));
    cudaMalloc(&partials, 8 * 64 * sizeof(float));
    for (int i = 0; i < 64; ++i) floats[i] = float(i);
    ownElementsKernel<<<8, 64>>>(floats, halves, partials);
    faults = emu::takeFaults();
    r.add("shared inputs, neighbouring 2-byte outputs and a block's own read-modify-writes are not races",
          halves[7] == 63 && partials[7 * 64 + 5] == 63.0f && faults.empty(),
          std::to_string(halves[7]) + ", " + std::to_string(partials[7 * 64 + 5]) + "; " + join(faults));
    cudaFree(partials);
    cudaFree(halves);
    cudaFree(sums);
  }
  cudaFree(ints);
  cudaFree(floats);
  emu::takeFaults();
}

}  // namespace emutest
